"""What the listener hears: the Cambridge MSBG hearing-loss model as a streaming stage."""

from .simulator import ENVELOPE_LOOKAHEAD, HearingLossSimulator, expansion_ratios, severity

__all__ = ["ENVELOPE_LOOKAHEAD", "HearingLossSimulator", "expansion_ratios", "severity"]
