"""PLC output: the ASCII line protocol over serial and Modbus RTU.

`open_link(config)` gives the station its link; both kinds retry to each part's deadline, reconnect on their
own and never raise from ``deliver`` (`station.plc.link`). A part whose ACCEPT the PLC did not confirm is
rejected by the PLC: the fail-safe default lives on the line, not in the station.
"""

from __future__ import annotations

from station.plc.base import PlcLink
from station.plc.config import PlcConfig


def open_link(config: PlcConfig) -> PlcLink:
    """The link for ``config.protocol``; pymodbus is imported only for Modbus."""
    if config.protocol == "modbus":
        from station.plc.modbus_link import ModbusLink

        return ModbusLink(config)
    from station.plc.ascii_link import AsciiLink

    return AsciiLink(config)
