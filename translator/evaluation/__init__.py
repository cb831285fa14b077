"""BLEU and chrF with sacreBLEU, and the evaluate() entry point."""
