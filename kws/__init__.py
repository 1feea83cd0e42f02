"""kws: a keyword spotter for microcontrollers (MFCC front-end, stacked LSTM, int8 TFLite)."""

__version__ = "0.1.0"
