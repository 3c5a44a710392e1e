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
        # ECharts' other builds, their source maps and its optional extensions: pages load
        # echarts.min.js only (which names no source map).
        "echarts.js",
        "echarts.js.map",
        "echarts.common.*",
        "echarts.simple.*",
        "echarts.esm.*",
        "extension",
    ]
