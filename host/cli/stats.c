/* --stats: energy accounting per image (spec section 6). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Energy by module, a group's subtotal above its members: where the energy
 * goes, and the SOPs RSM removed at each module's inputs. */
static void print_modules(const mst_stats *s, double n)
{
    printf("\n%-26s %11s %11s %10s %7s %14s\n", "module", "SOPs", "MACs", "mJ", "share", "SOPs dropped");
    for (int i = 0; i < s->num_modules; i++) {
        const mst_module_stat *m = &s->modules[i];
        int first = i == 0 || strcmp(s->modules[i - 1].group, m->group);
        int alone = i + 1 == s->num_modules || strcmp(s->modules[i + 1].group, m->group);
        if (first && !alone) {
            double sops = 0, macs = 0, e = 0, dropped = 0;
            for (int j = i; j < s->num_modules && !strcmp(s->modules[j].group, m->group); j++)
                sops += s->modules[j].sops, macs += s->modules[j].macs, e += s->modules[j].energy_j,
                    dropped += s->modules[j].sops_dropped;
            printf("%-26s %11.4g %11.4g %10.4g %6.1f%% %14.4g\n", m->group, sops / n, macs / n, e / n * 1e3,
                   100.0 * e / s->energy_j, dropped / n);
        }
        char label[64];
        snprintf(label, sizeof label, "%s%s%s", first && alone ? "" : "  ", first && alone ? m->group : m->name,
                 m->in_total ? "" : " (not in total)");
        printf("%-26s %11.4g %11.4g %10.4g", label, m->sops / n, m->macs / n, m->energy_j / n * 1e3);
        if (m->in_total) printf(" %6.1f%% %14.4g\n", 100.0 * m->energy_j / s->energy_j, m->sops_dropped / n);
        else printf("\n");
    }
    printf("%-26s %11.4g %11.4g %10.4g %6.1f%%\n", "total", s->sops / n, s->macs / n, s->energy_j / n * 1e3, 100.0);
}

void cli_print_stats(const mst_stats *s)
{
    double n = s->images > 0 ? s->images : 1;
    printf("\nenergy accounting per image, %g steps (0.9 pJ per SOP, 4.6 pJ per MAC):\n", s->steps);
    printf("%-40s %12s %12s %12s\n", "layer", "spikes in", "SOPs", "MACs");
    for (int i = 0; i < s->num_layers; i++)
        printf("%-40s %12.4g %12.4g %12.4g\n", s->layers[i].name, s->layers[i].spikes_in / n, s->layers[i].sops / n,
               s->layers[i].macs / n);
    printf("%-40s %12s %12.4g %12.4g\n", "total", "", s->sops / n, s->macs / n);
    printf("energy: %.4g mJ per image\n", s->energy_j / n * 1e3);
    printf("listed separately: head %.4g MACs, softmax %.4g exps, final LayerNorm %.4g elements per image\n",
           s->head_macs / n, s->softmax_exps / n, s->norm_elems / n);
    print_modules(s, n);
    printf("\n%-44s %10s\n", "IF site", "firing rate");
    for (int i = 0; i < s->num_sites; i++)
        printf("%-44s %10.4f\n", s->sites[i].name, s->sites[i].neurons > 0 ? s->sites[i].spikes / s->sites[i].neurons : 0);
}

json_t *cli_stats_json(const mst_stats *s)
{
    double n = s->images > 0 ? s->images : 1;
    json_t *layers = json_array(), *sites = json_array(), *modules = json_array();
    for (int i = 0; i < s->num_modules; i++) {
        const mst_module_stat *m = &s->modules[i];
        json_array_append_new(modules, json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:b}", "name", m->name, "group", m->group,
                                                 "sops", m->sops / n, "macs", m->macs / n, "energy_mj", m->energy_j / n * 1e3,
                                                 "sops_dropped", m->sops_dropped / n, "in_total", m->in_total));
    }
    for (int i = 0; i < s->num_layers; i++)
        json_array_append_new(layers, json_pack("{s:s, s:f, s:f, s:f, s:f}", "name", s->layers[i].name, "spikes_in",
                                                s->layers[i].spikes_in / n, "spikes_unmasked",
                                                s->layers[i].spikes_unmasked / n, "sops", s->layers[i].sops / n, "macs",
                                                s->layers[i].macs / n));
    for (int i = 0; i < s->num_sites; i++)
        json_array_append_new(sites, json_pack("{s:s, s:f, s:f}", "name", s->sites[i].name, "spikes",
                                               s->sites[i].spikes / n, "firing_rate",
                                               s->sites[i].neurons > 0 ? s->sites[i].spikes / s->sites[i].neurons : 0.0));
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:o}", "sops_per_image", s->sops / n, "macs_per_image",
                     s->macs / n, "energy_mj_per_image", s->energy_j / n * 1e3, "head_macs_per_image",
                     s->head_macs / n, "softmax_exps_per_image", s->softmax_exps / n, "norm_elems_per_image",
                     s->norm_elems / n, "modules", modules, "layers", layers, "sites", sites);
}
