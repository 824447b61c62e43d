"""Forecasting for the trader: model loading, the batched and stored forecast service,
and calibration of the forecast spread."""
