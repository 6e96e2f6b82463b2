"""The Gradio demo: layout and wiring in one place (handlers in handlers.py and generate.py).

Public endpoints (gradio_client `api_name`s): /analyze, /filters, /save_look, /load_look,
/live_frame, /prepare_face, /generate. See the About tab or README for their inputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from apps.demo import generate as gen
from apps.demo import handlers as h
from core.filters import builtin_presets
from core.guidance import disclaimer
from core.imageio import DEFAULT_LIMITS
from core.labels import CONDITIONS
from weights import default_spec

TITLE = "GlowAI: skin analysis and beauty-filter preview"
# Pictures go out as JPEG (WebP, Gradio's default, costs about 50 ms per large picture to encode);
# generated samples stay PNG so their pixels match the mask exactly.
CSS = """
.glowai-footer {font-size: 0.85em; opacity: 0.8}
.glowai-disclaimer {font-size: 0.9em}
"""


def _raw_path(payload):  # noqa: ANN001, ANN202 - gradio's preprocess signature
    if payload is None:
        return None
    if payload.path is None:
        raise h.UserError("The photo did not arrive; upload it again.")
    return str(payload.path)


def photo_input(label: str, height: int) -> gr.Image:
    """An image input that hands the handler the uploaded file's path without decoding it, so every
    photo goes through core.imageio's checks (limits, formats, hostile files) and a broken file gets
    a plain message instead of a server error. (An instance override, not a subclass: Gradio writes
    a .pyi stub next to the module of every Component subclass.)"""
    image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label=label, height=height)
    image.preprocess = _raw_path
    return image


def examples() -> list[str]:
    """The CC0 portraits, then the group photo (its own folder: it repeats two identities)."""
    return sorted(str(p) for p in h.EXAMPLES.glob("*.jpg")) + sorted(str(p) for p in h.EXAMPLES.glob("group/*.jpg"))


def about_markdown() -> str:
    """About tab: what the model is and is not, its card, data credits, privacy, limits, API."""
    spec = default_spec()
    card_path = Path(__file__).resolve().parents[2] / "weights" / f"{spec.name}.md"
    card = re.sub(r"\A---.*?---\s*", "", card_path.read_text(encoding="utf-8"), flags=re.S) if card_path.is_file() else ""
    card = re.sub(r"^(#+) ", r"#\1 ", card, flags=re.M)  # nest the card's headings under ours
    if spec.lesion_head:
        model_note = ("Its acne lesions were learned from the ACNE04 photos' expert lesion marks, which are "
                      "licensed for research use only, so these weights are for research and non-commercial use "
                      "(ACNE04 terms: cite Wu et al., ICCV 2019, and Gazeau et al., MICCAI 2024). "
                      "`glowai-unet-small`, trained on synthetic data only, stays available under Apache-2.0.")
        limits = ("Acne spots are learned from real clinical photos; redness, texture and dryness only from "
                  "synthetic blemishes painted onto stock portraits, so those three are rougher on real skin.")
        if spec.lesion_count_mass:
            limits += (" The picture marks the clear acne spots only; the count in the report is estimated from "
                       "all the acne the model sees, faint spots included, which follows what experts count "
                       "(still off by about 10 spots a photo on ACNE04, and low on very severe acne).")
        if spec.lesion_verifier:
            limits += (" Before a spot is marked, a second small network looks at the skin around it, which "
                       "tells raised spots from flat marks a little better; about a third of the spots experts "
                       "circle on ACNE04 are marked, fewer in dim light; it has not been measured on dark skin "
                       "(ACNE04 has almost no photos of dark-skinned people).")
        elif spec.lesion_count_threshold is not None and spec.lesion_count_threshold < spec.lesion_threshold:
            limits += (" The picture marks the clear acne spots only; the count in the report also takes the "
                       "faint ones, which brings it closer to what experts count (still off by about 11 spots "
                       "a photo on ACNE04).")
    else:
        model_note = "It was trained by this project on synthetic data only."
        limits = ("The blemish model was trained only on synthetic blemishes painted onto stock portraits; it "
                  "misses many real spots and is unsure on strong lighting, makeup, beards and glasses.")
    credits = (h.EXAMPLES / "CREDITS.md").read_text(encoding="utf-8")
    credits = re.sub(r"^(#+) ", r"##\1 ", credits, flags=re.M)
    return f"""
## What GlowAI is, and is not

GlowAI finds a face, maps five zones (forehead, cheeks, nose, chin) and marks four cosmetic skin
features pixel by pixel: acne, redness, texture and dryness. It writes a plain report per zone and
previews filters (blemish retouch, skin smoothing, makeup).

**{disclaimer()}**

## The model and its licence

The default blemish model is **{spec.name}**, licence: **{spec.license}**. {model_note}

## Privacy

Photos are processed in memory on this server and are not kept: uploaded files and the pictures
made from them sit in a temporary folder that is emptied every 10 minutes and deleted when the
server stops. Nothing of a photo is written to logs, and nothing is sent anywhere else.

## Limits

- {limits}
- Skin tone (ITA angle) depends on the light in the photo.
- Front-facing, evenly lit photos work best; the report warns about small, dark or blurred faces.

## For developers

Every tab can be called with `gradio_client`: `/analyze` (photo, face, close-up, shown classes),
`/filters`, `/save_look`, `/load_look`, `/live_frame`, `/prepare_face`, `/generate`. Open
"Use via API" at the bottom of the page for the exact signatures.

## The model card
{card}

## Example photo credits
{credits}
"""


def build_demo() -> gr.Blocks:
    """Build the Blocks (no model is loaded here: handlers load them on first use)."""
    presets = list(builtin_presets())
    with gr.Blocks(title=TITLE, delete_cache=(600, 600)) as demo:
        gr.Markdown(f"# {TITLE}\nUpload a selfie or use the webcam. *{disclaimer()}*",
                    elem_classes="glowai-disclaimer")
        with gr.Tab("Analyze", id="analyze", elem_id="tab-analyze"):
            view = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    photo = photo_input("Photo", 380)
                    gr.Examples(examples(), inputs=photo, label="Example photos (CC0)")
                    face = gr.Dropdown(h.face_choices(1), value=h.face_choices(1)[0], label="Face to analyse",
                                       visible=False, interactive=True)
                    whole_frame = gr.Checkbox(False, label="Close-up of skin (no face): analyse the whole frame")
                    analyze_btn = gr.Button("Analyze", variant="primary")
                with gr.Column(scale=2):
                    shown = gr.CheckboxGroup(h.CONDITION_TITLES, value=h.CONDITION_TITLES, label="Show")
                    masks = gr.Image(label="Where each condition is", height=420, interactive=False, format="jpeg")
                    with gr.Row():
                        zones = gr.Image(label="Zones", height=300, interactive=False, format="jpeg")
                        chart = gr.Plot(label="Severity per zone (0-100)")
            guidance = gr.Markdown(label="Guidance")
            card = gr.Image(label="Report card", interactive=False, format="jpeg")
            with gr.Accordion("Report as JSON", open=False):
                report = gr.JSON(label="Report")
                report_file = gr.File(label="Download the report", interactive=False)
            footer = gr.Markdown(elem_classes="glowai-footer")
            gr.on([analyze_btn.click, face.input], h.run_analysis, [photo, face, whole_frame, shown],
                  [masks, zones, card, chart, guidance, report, report_file, footer, face, view],
                  api_name="analyze", concurrency_id="analysis")
            photo.upload(h.new_photo, None, face, api_visibility="private", queue=False)
            shown.change(h.condition_picture, [view, shown], masks, api_visibility="private", queue=False)

        with gr.Tab("Retouch & makeup", id="filters", elem_id="tab-filters"):
            cache, reference_cache, loaded, look = gr.State(None), gr.State(None), gr.State(None), gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    f_photo = photo_input("Photo", 320)
                    gr.Examples(examples(), inputs=f_photo, label="Example photos (CC0)")
                    retouch_strength = gr.Slider(0, 1, 0.8, step=0.05, label="Blemish retouch strength")
                    smooth = gr.Slider(0, 1, 0.3, step=0.05, label="Skin smoothing")
                    source = gr.Radio(list(h.MAKEUP_SOURCES), value="Preset", label="Makeup from")
                    preset = gr.Dropdown(presets, value=presets[0], label="Preset")
                    reference = photo_input("Reference photo with makeup", 200)
                    with gr.Row():
                        lips = gr.Slider(0, 1, 1.0, step=0.05, label="Lips intensity")
                        blush = gr.Slider(0, 1, 1.0, step=0.05, label="Blush intensity")
                        eyeshadow = gr.Slider(0, 1, 1.0, step=0.05, label="Eyeshadow intensity")
                    apply_btn = gr.Button("Apply", variant="primary")
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="Before / after", max_height=640, format="jpeg")
                    f_status = gr.Markdown()
                    with gr.Row():
                        save_btn = gr.Button("Save this look as a preset file")
                        preset_out = gr.File(label="Preset file to download", interactive=False)
                    preset_in = gr.File(label="Load a preset file (.json)", file_types=[".json"], type="filepath")
            filter_inputs = [f_photo, retouch_strength, smooth, source, preset, reference, lips, blush, eyeshadow,
                             loaded, cache, reference_cache]
            filter_outputs = [slider, f_status, look, cache, reference_cache]
            gr.on([apply_btn.click, retouch_strength.release, smooth.release, lips.release, blush.release,
                   eyeshadow.release, source.input, preset.input], h.run_filters, filter_inputs, filter_outputs,
                  api_name="filters", concurrency_id="analysis", trigger_mode="always_last")
            save_btn.click(h.save_look, look, preset_out, api_name="save_look")
            preset_in.upload(h.load_look, preset_in, [loaded, source], api_name="load_look")

        with gr.Tab("Live", id="live", elem_id="tab-live"):
            gr.Markdown("Allow the camera and press record: each frame is filtered on the server and shown on "
                        "the right. Frames are not stored.")
            live_session = gr.State(None, delete_callback=h.close_live, time_to_live=900)
            with gr.Row():
                with gr.Column():
                    camera = gr.Image(sources=["webcam"], streaming=True, label="Webcam", height=360)
                    mode = gr.Radio(["Smoothing", "Smoothing + makeup"], value="Smoothing", label="Filter")
                    live_smooth = gr.Slider(0, 1, 0.5, step=0.05, label="Skin smoothing")
                    live_preset = gr.Dropdown(presets, value=presets[0], label="Makeup preset")
                with gr.Column():
                    live_out = gr.Image(label="Filtered", height=360, interactive=False, format="jpeg")
                    fps = gr.Markdown("Waiting for the camera...")
            camera.stream(h.live_frame, [camera, mode, live_smooth, live_preset, live_session],
                          [live_out, fps, live_session], api_name="live_frame", stream_every=0.1, time_limit=300,
                          concurrency_limit=4, show_progress="hidden")

        with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
            gr.Markdown(gen.backend_note())
            source_face = gr.State(None)
            with gr.Row():
                with gr.Column():
                    clean = photo_input("Clean face", 260)
                    gr.Examples(examples(), inputs=clean, label="Example faces (CC0)")
                    mask_mode = gr.Radio(list(gen.MASK_MODES), value=gen.MASK_MODES[0], label="Mask")
                    classes = gr.CheckboxGroup(h.CONDITION_TITLES, value=[CONDITIONS[0].title], label="Conditions")
                    severity = gr.Slider(0, 3, 2, step=1, label="Severity (0 mild - 3 severe)")
                    painted_class = gr.Dropdown(h.CONDITION_TITLES, value=CONDITIONS[0].title,
                                                label="Condition painted")
                    defect = photo_input("Defect reference (diffusion only)", 160)
                    seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                    gen_btn = gr.Button("Generate", variant="primary")
                with gr.Column():
                    gen_status = gr.Markdown("Upload a clean face (or pick an example).")
                    editor = gr.ImageEditor(label="Paint where the condition goes (used with 'Paint the mask')",
                                            type="numpy", sources=(), transforms=(), height=400,
                                            brush=gr.Brush(colors=["#ff3b3b"], default_size=18, color_mode="fixed"))
                    sample = gr.ImageSlider(label="Clean / generated", max_height=420, format="png")
                    sample_mask = gr.AnnotatedImage(label="Mask", color_map=h.COLOR_MAP, height=300)
                    qc = gr.Dataframe(headers=["QC", "value"], label="Quality checks", interactive=False)
            clean.change(gen.prepare_face, clean, [editor, source_face, gen_status], api_name="prepare_face")
            gen_btn.click(gen.run_generate, [source_face, mask_mode, classes, severity, painted_class, editor, defect,
                                             seed], [sample, sample_mask, qc, gen_status], api_name="generate",
                          concurrency_id="generate", concurrency_limit=1)

        with gr.Tab("About", id="about", elem_id="tab-about"):
            gr.Markdown(about_markdown())
    return demo


def launch(host: str | None = None, port: int | None = None, queue_size: int = 48, share: bool = False,
           block: bool = True) -> gr.Blocks:
    """Queue, limits and server settings for the built demo; `host`/`port` None use Gradio's
    environment (GRADIO_SERVER_NAME / _PORT, as on a Space) or 127.0.0.1:7860."""
    demo = build_demo()
    demo.queue(default_concurrency_limit=2, max_size=queue_size)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=DEFAULT_LIMITS.max_bytes,
                footer_links=["api", "gradio"], css=CSS, theme=gr.themes.Soft(), prevent_thread_lock=not block,
                quiet=not block)
    return demo
