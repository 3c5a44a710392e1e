"""The imaging archive: patients, studies, series and instances; ingest and its checks,
storage, DICOMweb, rendering, browser upload, and the one image viewer."""
