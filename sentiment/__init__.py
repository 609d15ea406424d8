"""Sentiment scoring and crisis detection: classifier, scorer stage, detector stage."""
