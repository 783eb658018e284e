"""SRE Agent: a Kafka-native AIOps agent.

Subpackages: ``schemas`` (wire models), ``models`` (online models),
``processors`` (pure stage logic), ``streams`` (the Faust app), ``sinks``
(I/O edges), ``devstack`` (local Kafka/PostgreSQL for dev, tests, demo).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
