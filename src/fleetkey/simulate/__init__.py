"""What-if simulation of whole fleets over months, by the device rules (docs/simulate.md)."""
