"""Pure integer maths of the perpetual: funding, margin, fees, mark price.

No I/O, clocks or randomness: every input (time, prices, positions) is an argument.
"""
