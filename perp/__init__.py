"""Pure perpetual-futures risk maths: positions, margin, funding and fees."""
