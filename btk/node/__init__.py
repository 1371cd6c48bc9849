"""btk as a hospital node (``btk listen``): a DICOM C-STORE receiver (:mod:`btk.node.receiver`),
a journal of everything received and answered (:mod:`btk.node.journal`), and the work that
answers each complete study once and sends the answer back (:mod:`btk.node.service`)."""
