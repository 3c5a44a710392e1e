"""The scale world (`manage.py seed_scale`): a region-sized alliance the worklist, routing,
claims and analytics benches run on."""
