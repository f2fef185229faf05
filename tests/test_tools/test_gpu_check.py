# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``tools/misc/gpu_check.py``'s summary: JUnit counts, failing ids, the GPU tests' measurements."""

import json

from mmrefvlm.testing.tool_helpers import load_tool

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.test_gpu.test_gpu_tools" name="test_amp" time="40"/>
<testcase classname="projects.sam_plugin.tests.test_sam_cuda" name="test_sam" time="3">
  <failure message="boom">trace</failure></testcase>
<testcase classname="tests.test_trp.test_trp_parser" name="test_parse" time="0.1"/>
<testcase classname="tests.test_models.test_refvlm" name="test_x" time="1">
  <error message="setup">trace</error></testcase>
<testcase classname="tests.test_gpu.test_gpu_model" name="test_qlora" time="0">
  <skipped message="no bitsandbytes"/></testcase>
</testsuite></testsuites>
"""


def test_junit_counts_and_summary(tmp_path):
    tool = load_tool('misc/gpu_check')
    path = tmp_path / 'junit.xml'
    path.write_text(JUNIT)
    counts = tool.junit_counts(str(path))
    assert (counts['tests'], counts['passed'], counts['failed'], counts['skipped']) == (5, 2, 2, 1)
    assert counts['failures'] == [
        'projects.sam_plugin.tests.test_sam_cuda::test_sam',
        'tests.test_models.test_refvlm::test_x',
    ]
    assert counts['gpu_ran'] == 1  # the failed and the skipped GPU tests do not count
    report = tmp_path / 'report.jsonl'
    rows = [
        dict(name='amp_bf16_train', step_time_s=0.0123, peak_memory_mb=812.4, batch_size=8),
        dict(name='predict_parity', generated_tokens=57),
    ]
    report.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    info = dict(date='2026-12-04', gpu='NVIDIA H200', torch='2.11.0', commit='abc123')
    text = tool.summary_markdown(counts, tool.read_report(str(report)), info, 201.4)
    assert '5 (2 passed, 2 failed, 1 skipped)' in text
    assert '12.3 ms median' in text and '812 MB' in text
    assert 'predict_parity | generated_tokens=57' in text
    assert '- `tests.test_models.test_refvlm::test_x`' in text and 'NVIDIA H200' in text
