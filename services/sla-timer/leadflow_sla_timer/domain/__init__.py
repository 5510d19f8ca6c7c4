"""Pure rules of sla-timer: the ladders of SLA clocks and the judgement of period commitments."""
