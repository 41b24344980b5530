"""The web page to explore a model (`selfsup serve`): Streamlit, reading runs and calling insight and eval; the
page itself holds no model logic (`explore.py` and `neighbours.py` have what it computes, `app.py` only lays it out)."""
