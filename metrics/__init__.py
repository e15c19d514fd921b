"""Quality metrics for generators: FID, KID, precision/recall, IS and PPL with NVlabs-identical
formulas and image pipeline, distributed over ranks, with cached dataset statistics.

Entry points: `metrics.metric_main.calc_metric`, `report_metric`, `run_metrics_on_snapshot`, and the
pure formula functions of each metric module. This package never imports `training`.
"""
