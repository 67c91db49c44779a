"""Figures and the REPORT.md that read run and sweep directories."""
