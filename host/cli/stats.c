/* --stats: energy accounting per image (spec section 6). */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"

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
    printf("\n%-44s %10s\n", "IF site", "firing rate");
    for (int i = 0; i < s->num_sites; i++)
        printf("%-44s %10.4f\n", s->sites[i].name, s->sites[i].neurons > 0 ? s->sites[i].spikes / s->sites[i].neurons : 0);
}

json_t *cli_stats_json(const mst_stats *s)
{
    double n = s->images > 0 ? s->images : 1;
    json_t *layers = json_array(), *sites = json_array();
    for (int i = 0; i < s->num_layers; i++)
        json_array_append_new(layers, json_pack("{s:s, s:f, s:f, s:f}", "name", s->layers[i].name, "spikes_in",
                                                s->layers[i].spikes_in / n, "sops", s->layers[i].sops / n, "macs",
                                                s->layers[i].macs / n));
    for (int i = 0; i < s->num_sites; i++)
        json_array_append_new(sites, json_pack("{s:s, s:f, s:f}", "name", s->sites[i].name, "spikes",
                                               s->sites[i].spikes / n, "firing_rate",
                                               s->sites[i].neurons > 0 ? s->sites[i].spikes / s->sites[i].neurons : 0.0));
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o}", "sops_per_image", s->sops / n, "macs_per_image",
                     s->macs / n, "energy_mj_per_image", s->energy_j / n * 1e3, "head_macs_per_image",
                     s->head_macs / n, "softmax_exps_per_image", s->softmax_exps / n, "norm_elems_per_image",
                     s->norm_elems / n, "layers", layers, "sites", sites);
}
