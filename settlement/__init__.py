"""On-chain clearing program toolchain and the settlement service that posts fills to it."""
