"""The recommender API: FastAPI over an Annoy index bundle and a CLIP embedder (in process or remote).

- `config`: `RecommenderSettings` from `RECOMMENDER_*`, validated at start-up.
- `app`: `create_app(settings)`, the lifespan (load the index, wait for the model, SIGHUP reloads).
- `index`: the hot-swappable holder of the serving index bundle.
- `routes/`: the HTTP routes; `errors`: the one place exceptions become status codes.
"""
