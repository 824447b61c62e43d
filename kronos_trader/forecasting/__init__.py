"""Forecasting for the trader: model loading, the forecast value types (`values`: a window's
forecast, P(up), the neutral forecast, window seeds), the batched and stored forecast service
(`service`), and calibration of the forecast spread."""
