"""Classic (tabular) model pipelines: reading and splitting data, validating it against the
app's schema, the feature-and-estimator Pipeline, the hyperparameter search and the metrics.
The training flow that joins them (and registers the result) is ``llmops.pipelines.train``."""
