"""Model development: training (`train`), evaluation on synthetic and real photos (`evaluate`) and
model cards and publishing (`card`). The runtime path a visitor's photo takes lives beside this
folder (core/segmentation.py and friends) and never imports it."""
