OUT = config["out_dir"]
DICOM = config["dicom_dir"]
