"""Registration at the source: a clinic registers an exam before the scan; its gateway serves
the scheduled exams as a DICOM Modality Worklist; the study that arrives is matched back."""
