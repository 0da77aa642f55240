"""DICOM results for DICOM inputs, built with highdicom: a TID 1500 measurement report per study, a grayscale
softcopy presentation state per boxed image, a secondary capture of the overlay.

Pure builders: source headers and results in, pydicom datasets out (no files, no network; the sink in
:mod:`mura_cli.engine.serving.dicom_sink` writes and sends them). Every object joins the source study (its Study
Instance UID, patient and study modules) in a new series of its own modality (SR, PR, OT), described as
:data:`SERIES_DESCRIPTION`.

Geometry: boxes are in the source image's full-resolution pixels, ``(column, row)`` floats with ``(0, 0)`` the
top-left corner of the top-left pixel; a box's ``x1, y1`` (exclusive pixel indices) are therefore its right
and bottom edges, and the closed polyline repeats its first point. Frames are numbered from 1 and referenced
only for multi-frame sources.

The report is a Comprehensive SR: the IOD TID 1500 readers (highdicom's ``srread``, dcmqi, OHIF/dcmjs) are
written and tested against; Enhanced SR would also hold this content (planar coordinates, no by-reference
relationships), but is less often accepted by viewers that display TID 1500 regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mura_cli.data.dicomweb import RESULT_SERIES as SERIES_DESCRIPTION
from mura_cli.errors import MuraError

SERIES_NUMBERS = {"sr": 9901, "pr": 9902, "sc": 9903}
"""Series numbers of the new series, high so that viewers list them after the source series."""
OBJECT_KINDS = ("sr", "pr", "sc")

# Type 2 attributes highdicom copies from the source (``ds.PatientID`` etc.): present but empty when absent.
_TYPE2_FROM_SOURCE = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
MANUFACTURER = "mura-cli"


@dataclass(frozen=True)
class Algorithm:
    """Who made the result: the model's name, its weights' SHA-256 and the mura-cli version."""

    model: str
    weights_sha256: str
    version: str

    @property
    def device_uid(self) -> str:
        """A UID fixed by the weights, so every object of one model names the same observer device."""
        from pydicom.uid import generate_uid

        return str(generate_uid(entropy_srcs=[self.weights_sha256, self.version]))


@dataclass(frozen=True)
class ImageFinding:
    """One scored source image (one frame).

    Attributes:
        source: the source image's header (pixel data not needed).
        frame: 0-based frame index (referenced as ``frame + 1`` for multi-frame sources).
        probability: p(abnormal) of the image.
        box: the CAM box ``(x0, y0, x1, y1)`` in the source's full-resolution pixels (``x1, y1`` exclusive), if any.
    """

    source: Any
    frame: int
    probability: float
    box: tuple[int, int, int, int] | None = None

    @property
    def frame_number(self) -> int | None:
        """The DICOM frame number to reference, or ``None`` for a single-frame source."""
        return self.frame + 1 if int(self.source.get("NumberOfFrames", 1) or 1) > 1 else None


@dataclass(frozen=True)
class StudyFinding:
    """A study: its images, the aggregated probability and the finding at ``threshold``."""

    study_uid: str
    probability: float
    threshold: float
    images: tuple[ImageFinding, ...]

    @property
    def abnormal(self) -> bool:
        return self.probability >= self.threshold


def _hd() -> Any:
    try:
        import highdicom
    except ImportError:
        raise MuraError("DICOM outputs need highdicom: pip install 'mura-cli[pacs]'") from None
    return highdicom


def prepare_source(ds: Any) -> Any:
    """A copy of a source header with the Type 2 patient/study attributes highdicom copies present (empty when the
    source lacks them: a reference must not invent a patient id)."""
    out = ds.copy()
    for key in _TYPE2_FROM_SOURCE:
        if key not in out:
            setattr(out, key, "")
    return out


def box_polyline(box: tuple[int, int, int, int]) -> np.ndarray:
    """The closed polyline of a box as 5x2 ``(column, row)`` float32, corners of the covered pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def _codes() -> dict[str, Any]:
    from pydicom.sr.coding import Code

    return {
        # not DCM 121071 "Finding": TID 1501 reserves that concept for the finding type, and readers skip it
        "finding": Code("404684003", "SCT", "Clinical finding"),
        "abnormal": Code("263654008", "SCT", "Abnormal"),
        "normal": Code("17621005", "SCT", "Normal"),
        "probability": Code("ABNPROB", "99MURACLI", "Probability of abnormality"),
        "unitless": Code("1", "UCUM", "no units"),
        "procedure": Code("363680008", "SCT", "Radiographic imaging procedure"),
    }


def _group_items(hd: Any, algo: Any, probability: float, abnormal: bool) -> dict[str, Any]:
    c = _codes()
    return {
        "algorithm_id": algo,
        "measurements": [hd.sr.Measurement(c["probability"], float(probability), c["unitless"], algorithm_id=algo)],
        "qualitative_evaluations": [
            hd.sr.QualitativeEvaluation(c["finding"], c["abnormal"] if abnormal else c["normal"])
        ],
    }


def build_sr(study: StudyFinding, algorithm: Algorithm, series_uid: str) -> Any:
    """The TID 1500 measurement report of one study (Comprehensive SR; see the module docstring for why).

    Content: the study group (probability, finding at the threshold), then one group per image: with a box an
    image region (POLYLINE) on the source instance (and frame), else the image as source; each with the image's
    probability and its finding. The algorithm (model, weights SHA-256, threshold) identifies every group.
    """
    hd = _hd()
    from pydicom.uid import generate_uid

    c = _codes()
    algo = hd.sr.AlgorithmIdentification(
        name=algorithm.model,
        version=algorithm.version,
        parameters=[f"weights_sha256={algorithm.weights_sha256}", f"threshold={study.threshold:.6f}"],
    )
    sources = [prepare_source(i.source) for i in study.images]
    groups: list[Any] = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="study"),
            **_group_items(hd, algo, study.probability, study.abnormal),
        )
    ]
    for n, (img, src) in enumerate(zip(study.images, sources, strict=True), 1):
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"image {n}")
        frames = [img.frame_number] if img.frame_number else None
        items = _group_items(hd, algo, img.probability, img.probability >= study.threshold)
        if img.box is None:
            ref = hd.sr.SourceImageForMeasurementGroup.from_source_image(src, referenced_frame_numbers=frames)
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(tracking, source_images=[ref], **items))
            continue
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=box_polyline(img.box),
            source_image=hd.sr.SourceImageForRegion.from_source_image(src, referenced_frame_numbers=frames),
        )
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(tracking, referenced_region=region, **items))
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=algorithm.device_uid, name=algorithm.model, manufacturer_name=MANUFACTURER, model_name=algorithm.model
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=c["procedure"],
        imaging_measurements=groups,
    )
    return hd.sr.ComprehensiveSR(
        evidence=_unique(sources),
        content=report[0],
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=SERIES_DESCRIPTION,
        is_complete=True,
        manufacturer_model_name=algorithm.model,
        software_versions=algorithm.version,
    )


def _unique(sources: Sequence[Any]) -> list[Any]:
    """The sources once per SOP Instance UID (the same instance may come in twice, e.g. in two syntaxes)."""
    seen: dict[str, Any] = {}
    for s in sources:
        seen.setdefault(str(s.SOPInstanceUID), s)
    return list(seen.values())


def build_gsps(image: ImageFinding, algorithm: Algorithm, series_uid: str, instance_number: int) -> Any:
    """A grayscale softcopy presentation state drawing ``image.box`` and its probability over the source.

    The source's window (VOI LUT) and rescale are carried over by highdicom. The presentation LUT shape is
    chosen deliberately: a presentation state ignores the referenced image's photometric interpretation, so a
    MONOCHROME1 source (low values white) gets ``INVERSE`` and renders as the source does; MONOCHROME2 gets
    ``IDENTITY``.
    """
    hd = _hd()
    from pydicom.uid import generate_uid

    if image.box is None:
        raise ValueError("a presentation state needs a box")
    src = prepare_source(image.source)
    x0, y0 = image.box[:2]
    layer = hd.pr.GraphicLayer(layer_name="MURA_CAM", order=1, description="mura-cli class activation map box")
    h = max(8, round(0.03 * int(src.Rows)))  # the label above the box, inside it when the box touches the top
    text_row = float(y0 - h if y0 >= h else y0 + h)
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[src],
        graphic_layer=layer,
        referenced_frame_number=image.frame_number,
        graphic_objects=[
            hd.pr.GraphicObject(
                graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                graphic_data=box_polyline(image.box),
                units=hd.pr.AnnotationUnitsValues.PIXEL,
            )
        ],
        text_objects=[
            hd.pr.TextObject(
                text_value=f"p(abnormal) = {image.probability:.3f}",
                units=hd.pr.AnnotationUnitsValues.PIXEL,
                anchor_point=(float(x0), text_row),
                anchor_point_visible=False,
            )
        ],
    )
    inverse = str(src.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1"
    shape = hd.PresentationLUTShapeValues.INVERSE if inverse else hd.PresentationLUTShapeValues.IDENTITY
    pr = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[src],
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["pr"],
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.model,
        software_versions=algorithm.version,
        device_serial_number=algorithm.weights_sha256[:16],
        content_label="MURA_CAM_BOX",
        content_description=f"CAM box, p(abnormal) {image.probability:.3f}"[:64],
        graphic_annotations=[annotation],
        graphic_layers=[layer],
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=shape),
        series_description=SERIES_DESCRIPTION,
        **_classic_multiframe_luts(hd, src),
    )
    _copy_laterality(pr, src)
    return pr


def _item(values: dict[str, Any]) -> Any:
    from pydicom import Dataset

    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def _classic_multiframe_luts(hd: Any, src: Any) -> dict[str, Any]:
    """For a multi-frame source without functional groups (a classic multi-frame IOD such as multi-frame
    secondary capture), the modality and VOI LUTs from its top-level attributes: highdicom looks for them only in
    the functional groups of multi-frame images. Empty for every other source."""
    if int(src.get("NumberOfFrames", 1) or 1) <= 1 or "SharedFunctionalGroupsSequence" in src:
        return {}

    def first(v: Any) -> float:
        return float(v[0] if isinstance(v, Sequence) and not isinstance(v, str) else v)

    bits = int(src.get("BitsStored", 16))
    center = first(src.get("WindowCenter", 2 ** (bits - 1)))
    width = first(src.get("WindowWidth", 2**bits))
    return {
        "modality_lut_transformation": hd.ModalityLUTTransformation(
            rescale_intercept=first(src.get("RescaleIntercept", 0)),
            rescale_slope=first(src.get("RescaleSlope", 1)),
            rescale_type=hd.RescaleTypeValues.US,
        ),
        "voi_lut_transformations": [hd.pr.SoftcopyVOILUTTransformation(window_center=center, window_width=width)],
    }


def _copy_laterality(obj: Any, src: Any) -> None:
    """General Series Laterality (Type 2C, a paired body part): the source's, else present and empty (unknown)."""
    obj.Laterality = src.get("Laterality", "") or ""  # dciodvfy: empty is "unknown", absent is an error


def build_sc(image: ImageFinding, rgb: np.ndarray, algorithm: Algorithm, series_uid: str, instance_number: int) -> Any:
    """A secondary capture of the overlay (``rgb``: HxWx3 uint8) in the source's study, for viewers without
    presentation states."""
    hd = _hd()
    from pydicom.uid import generate_uid

    src = prepare_source(image.source)
    orientation = src.get("PatientOrientation")
    known = bool(orientation) and len(orientation) == 2 and all(orientation)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=src,
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["sc"],
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=tuple(orientation) if known else ("L", "F"),  # replaced below when unknown
        series_description=SERIES_DESCRIPTION,
        manufacturer_model_name=algorithm.model,
        software_versions=algorithm.version,
    )
    ref = {"ReferencedSOPClassUID": src.SOPClassUID, "ReferencedSOPInstanceUID": src.SOPInstanceUID}
    if image.frame_number:
        ref["ReferencedFrameNumber"] = image.frame_number
    sc.SourceImageSequence = [_item(ref)]
    if not known:  # Type 2C: present and empty when the source does not say (highdicom insists on a value)
        sc.PatientOrientation = ""
    sc.ImageComments = f"mura-cli overlay, p(abnormal) {image.probability:.3f}"
    _copy_laterality(sc, src)
    return sc
