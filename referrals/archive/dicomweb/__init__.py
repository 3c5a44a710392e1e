"""DICOMweb (PS3.18): STOW-RS, QIDO-RS and WADO-RS over the hub's access layer."""
