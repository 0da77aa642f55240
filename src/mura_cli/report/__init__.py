"""Files for people: training curves, model cards, overlays. No torch, no CLI."""
