"""200-bp enhancer design: cell-type activity proxies for HepG2, K562 and GM12878."""
