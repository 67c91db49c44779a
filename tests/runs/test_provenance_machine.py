"""icl_stl.runs.provenance.machine: the one description of a host the results folders use."""

from __future__ import annotations

import os

from icl_stl.runs.provenance import machine


def test_machine_names_the_host_its_cpu_and_its_cores():
    host = machine()
    assert set(host) == {"host", "cpu", "cores", "platform", "python", "torch"}
    assert host["cores"] == os.cpu_count() and host["cpu"]
    assert host["torch"] is not None  # the test environment has torch installed
