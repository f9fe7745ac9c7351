"""The built-in `xdp` program type: multi-prog XDP chains per interface
(libxdp, static and single modes). See docs/xdp.md."""
