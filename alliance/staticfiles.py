"""collectstatic's view of the npm packages: only the files pages load.

ECharts' dist/ is 51 MB of bundle variants, source maps and extensions; pages load
`echarts.min.js` alone. Compressing all of it on every collectstatic (the image build, the
deploy test) cost minutes. The patterns below leave out what no page references.
"""

from __future__ import annotations

from django.contrib.staticfiles.apps import StaticFilesConfig


class HubStaticFilesConfig(StaticFilesConfig):
    ignore_patterns = [
        *StaticFilesConfig.ignore_patterns,
        "*.map",  # source maps of vendored bundles
        "*.mjs", "*.esm.js", "*.esm.min.js",  # ES-module builds; pages use the UMD bundle
        "extension",  # ECharts' optional extensions
        "echarts.js", "echarts.common.*", "echarts.simple.*",  # unminified / partial builds
        "dicomParser.js",  # unminified
    ]
