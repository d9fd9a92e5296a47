"""Continuous distillation's reusable parts: landing-zone sources, encoding of arriving
partitions, the per-partition label store, the committed follow state and bundle versions.
The `follow` verb (ctrdistill.pipelines.follow) drives them."""
