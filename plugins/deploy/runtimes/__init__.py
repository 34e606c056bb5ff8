"""One file per runtime with its deploy artifacts (registered in :data:`liteda.deploy.ARTIFACTS`) and the
runner helpers the benchmark scripts share."""
