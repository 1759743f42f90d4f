"""The page: the Scene, Zoom and 3D zoom tabs, their components and how events reach the handlers.

Handlers live in :mod:`apps.handlers` (one module per tab below it); this module only lays out
components and wires events: which inputs, which outputs, which queue.
"""

from __future__ import annotations

import gradio as gr

from apps.handlers import DreamerApp
from apps.inputs import DEPTH_TYPES, IMAGE_TYPES, InputError, Limits, check_upload
from apps.settings import (FILES_QUEUE, GPU_QUEUE, MODEL_SETS, SCENE_EXAMPLES, SCENE_TRAJECTORIES, SCENE_VIEWER_ID,
                           ZOOM3D_VIEWER_ID, ZOOM_MODEL_SETS, AppSettings, scene_form_defaults)
from apps.viewer import read_camera_js, viewer_component
from dreamer.pipeline.limits import MAX_SEED

__all__ = ["build_app", "photo_input"]

_INTRO = """# dreamer: infinite 3D scenes with deep zoom
Type a prompt or drop in a photo: the scene is dreamed one camera at a time into a consistent 3D
world, lifted into Gaussian splats and flown through. Walk around it in the 3D view and press
**Dream here** to dream what you look at. No weights on this machine? Pick the **synthetic** model
set (a procedural world) or **tiny**, or click an example below."""


def photo_input(limits: Limits, field_name: str = "Photo", **kwargs) -> gr.Image:
    """A ``gr.Image`` (a file path, as uploaded) that checks the upload - type, file size, pixel
    count, readable - before gradio opens it, and answers a bad one with a readable message.

    (The check wraps the instance's ``preprocess``: a subclass of a gradio component would make
    gradio write a ``.pyi`` stub next to this file.)"""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    gradio_preprocess = image.preprocess

    def preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            try:
                check_upload(payload.path, field_name, IMAGE_TYPES, limits)
            except InputError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return gradio_preprocess(payload)

    image.preprocess = preprocess
    return image


def _scene_tab(app: DreamerApp, settings: AppSettings, state: gr.State) -> dict:
    lim = settings.limits
    start = scene_form_defaults(settings.models)  # small on a CPU, the real settings on a GPU
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", lines=2, max_length=lim.max_prompt_chars,
                                placeholder="a cozy reading room with a fireplace")
            with gr.Row():
                photo = photo_input(lim, label="Photo (optional)", sources=["upload", "clipboard"], height=180)
                depth = gr.File(label="Depth map (optional)", file_types=list(DEPTH_TYPES), height=120)
            negative = gr.Textbox(label="Negative prompt", max_length=lim.max_prompt_chars,
                                  value="text, watermark, signature, blurry, low quality, distorted, deformed")
            with gr.Row():
                trajectory = gr.Dropdown(list(SCENE_TRAJECTORIES), value="lookaround", label="Trajectory")
                trajectory_file = gr.File(label="or a trajectory file (.json)", file_types=[".json"], height=80)
            with gr.Row():
                views = gr.Slider(1, lim.max_views, value=start["views"], step=1, label="Views", elem_id="scene-views")
                gs_iters = gr.Slider(10, 30000, value=start["iterations"], step=10, label="Gaussian iterations",
                                     elem_id="scene-iterations")
            with gr.Row():
                steps = gr.Slider(1, 150, value=start["steps"], step=1, label="Inpainting steps")
                guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                models = gr.Dropdown(list(MODEL_SETS), value=settings.models, label="Model set", elem_id="scene-models")
            with gr.Accordion("Size and video", open=False):
                size = gr.Slider(64, lim.max_size, value=start["size"], step=8, label="Image size (px, square)",
                                 elem_id="scene-size")
                frames = gr.Slider(8, 600, value=start["frames"], step=1, label="Fly-through frames",
                                   elem_id="scene-frames")
            refine = gr.Checkbox(value=False, elem_id="scene-refine",
                                 label="Refine: dream what the fly-through shows behind objects, train the splats "
                                       "on repaired novel views and on the views' depth (slower)")
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="scene-generate")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="scene-status")
            viewer = viewer_component(SCENE_VIEWER_ID, height=440)
            with gr.Row(equal_height=True):
                here_prompt = gr.Textbox(label="Prompt for the new part (empty: the scene's)", scale=3,
                                         max_length=lim.max_prompt_chars, elem_id="dream-prompt")
                around = gr.Slider(0, 4, value=0, step=1, label="Cameras around it", scale=1, elem_id="dream-around")
                dream = gr.Button("Dream here", variant="primary", scale=1, elem_id="dream-here")
                undo = gr.Button("Undo", scale=1, elem_id="dream-undo")
            camera = gr.Textbox(visible=False)  # the viewer's camera, filled in by the page when Dream here is pressed
            with gr.Row():
                video = gr.Video(label="Fly-through", autoplay=True, loop=True)
                depth_video = gr.Video(label="Depth", autoplay=True, loop=True)
            gallery = gr.Gallery(label="Dreamed views", columns=6, height=200, format="png", elem_id="scene-gallery")
            downloads = gr.File(label="Downloads", file_count="multiple", height=120, elem_id="scene-downloads")
    scene_inputs = [prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance, seed,
                    gs_iters, models, size, frames]
    gr.Examples(label="Examples (offline models, small sizes: seconds to a minute or two on a CPU)",
                examples=[list(e) for e in SCENE_EXAMPLES], inputs=scene_inputs, cache_examples=False)

    def _generate(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance, seed,
                  gs_iters, models, size, frames, state, refine=False, request: gr.Request = None,
                  progress=gr.Progress()):
        return app.scene.generate(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps,
                                  guidance, seed, gs_iters, models, size, frames, state, request, progress,
                                  refine=refine)

    def _dream_here(camera, prompt, around, state, request: gr.Request, progress=gr.Progress()):
        return app.dream_here.extend(camera, prompt, around, state, request, progress)

    def _undo(state, request: gr.Request):
        return app.dream_here.undo(state, request)

    scene_outputs = [viewer, video, depth_video, gallery, downloads, status]
    generate.click(_generate, inputs=scene_inputs + [state, refine], outputs=scene_outputs + [state], api_name="scene",
                   concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)
    dream.click(_dream_here, inputs=[camera, here_prompt, around, state], outputs=[viewer, gallery, downloads, status],
                api_name="dream_here", concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency,
                js=read_camera_js(4, 0, SCENE_VIEWER_ID))
    undo.click(_undo, inputs=[state], outputs=[viewer, gallery, downloads, status], api_name="undo",
               concurrency_id=FILES_QUEUE, concurrency_limit=4)
    return {"inputs": scene_inputs, "outputs": scene_outputs, "stop": stop, "status": status}


def _zoom_tab(app: DreamerApp, settings: AppSettings) -> dict:
    zoom_default = settings.models if settings.models in ZOOM_MODEL_SETS else "tiny"
    with gr.Row():
        with gr.Column(scale=1):
            prompts = gr.Textbox(label="Prompts, one per level (widest first)", lines=5,
                                 placeholder="a galaxy\na solar system\na blue planet\na coastline")
            photo = photo_input(settings.limits, label="Photo of the widest level (optional)",
                                sources=["upload", "clipboard"], height=180)
            with gr.Row():
                p = gr.Radio([2, 4], value=2, label="Zoom factor p")
                levels = gr.Slider(1, 8, value=4, step=1, label="Levels")
            with gr.Row():
                steps = gr.Slider(1, 150, value=50, step=1, label="Steps")
                guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                size = gr.Slider(64, 768, value=512, step=64, label="Size (px)")
            models = gr.Dropdown(list(ZOOM_MODEL_SETS), value=zoom_default, label="Model set")
            with gr.Row():
                generate = gr.Button("Zoom", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            status = gr.Markdown("")
            video = gr.Video(label="Zoom video", autoplay=True, loop=True)
            gallery = gr.Gallery(label="Levels", columns=4, height=260, format="png")
            downloads = gr.File(label="Downloads", file_count="multiple", height=120)
    inputs = [prompts, photo, p, levels, steps, guidance, seed, size, models]
    gr.Examples(label="Examples (tiny random models: plumbing only, fast on a CPU)",
                examples=[["a galaxy\na solar system\na blue planet", None, 2, 3, 4, 7.5, 0, 64, "tiny"]],
                inputs=inputs, cache_examples=False)

    def _generate(prompts, photo, p, levels, steps, guidance, seed, size, models, request: gr.Request,
                  progress=gr.Progress()):
        return app.zoom.generate(prompts, photo, p, levels, steps, guidance, seed, size, models, request, progress)

    generate.click(_generate, inputs=inputs, outputs=[gallery, video, downloads, status], api_name="zoom",
                   concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)
    return {"stop": stop, "status": status}


def _zoom3d_tab(app: DreamerApp, settings: AppSettings, state: gr.State) -> dict:
    gr.Markdown("Fly into one of your scenes: pick a view, click the point to zoom into, and the zoom levels are "
                "dreamed, lifted into the scene's points and trained into its splats.")
    last_view = 2 * settings.limits.max_views - 1
    with gr.Row():
        with gr.Column(scale=1):
            scene = gr.Dropdown([], label="Scene (yours, from the Scene tab)", allow_custom_value=True)
            view = gr.Slider(0, last_view, value=0, step=1, label="View")
            image = gr.Image(label="Click the zoom point", type="filepath", interactive=False, height=240)
            with gr.Row():
                u = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom point x (0 left, 1 right)")
                v = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom point y (0 top, 1 bottom)")
            with gr.Row():
                levels = gr.Slider(2, 8, value=3, step=1, label="Levels")
                p = gr.Radio([2, 4], value=2, label="Zoom factor p")
            prompts = gr.Textbox(label="Prompts (optional): one, or one per level", lines=3)
            with gr.Row():
                steps = gr.Slider(1, 150, value=30, step=1, label="Steps")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            frames = gr.Slider(8, 600, value=48, step=1, label="Fly-in frames")
            with gr.Row():
                generate = gr.Button("Zoom into the scene", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            status = gr.Markdown("")
            with gr.Row():
                fly = gr.Video(label="Fly-in", autoplay=True, loop=True)
                flat = gr.Video(label="The zoom stack (2D)", autoplay=True, loop=True)
            gallery = gr.Gallery(label="Levels", columns=4, height=200, format="png")
            viewer = viewer_component(ZOOM3D_VIEWER_ID, height=360)
            downloads = gr.File(label="Downloads", file_count="multiple", height=120)

    def _view_image(scene, view, state, request: gr.Request):
        return app.zoom3d.view_image(scene, view, state, request)

    def _pick(image, evt: gr.SelectData):
        from PIL import Image

        if image is None or evt is None or evt.index is None:
            return gr.update(), gr.update()
        with Image.open(image) as im:
            w, h = im.size
        x, y = evt.index[:2]
        return round(min(max((x + 0.5) / w, 0.0), 1.0), 3), round(min(max((y + 0.5) / h, 0.0), 1.0), 3)

    def _generate(scene, view, u, v, levels, p, prompts, steps, seed, frames, state, request: gr.Request,
                  progress=gr.Progress()):
        return app.zoom3d.generate(scene, view, u, v, levels, p, prompts, steps, seed, frames, state, request,
                                   progress)

    state.change(app.zoom3d.scene_choices, inputs=state, outputs=scene, api_name=False, queue=False)
    for trigger in (scene.change, view.release):
        trigger(_view_image, inputs=[scene, view, state], outputs=image, api_name=False, queue=False)
    image.select(_pick, inputs=image, outputs=[u, v], api_name=False, queue=False)
    generate.click(_generate, inputs=[scene, view, u, v, levels, p, prompts, steps, seed, frames, state],
                   outputs=[fly, flat, gallery, viewer, downloads, status], api_name="zoom3d",
                   concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)
    return {"stop": stop, "status": status}


def build_app(settings: AppSettings) -> gr.Blocks:
    """The gradio Blocks of the app (not launched); ``demo.dreamer_app`` is its :class:`DreamerApp`."""
    app = DreamerApp(settings)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts from outside hosts
    with gr.Blocks(title="dreamer", delete_cache=(3600, 24 * 3600)) as demo:
        demo.theme_for_launch = theme
        state = gr.State({})
        gr.Markdown(_INTRO)
        with gr.Tab("Scene"):
            scene = _scene_tab(app, settings, state)
        with gr.Tab("Zoom"):
            zoom = _zoom_tab(app, settings)
        with gr.Tab("3D zoom"):
            zoom3d = _zoom3d_tab(app, settings, state)

        if settings.showcase:
            # The first example is run once, now; every page that opens shows its results.
            class _Showcase:
                session_hash = "showcase"

            shown = (*SCENE_EXAMPLES[0], *app.scene.generate(*SCENE_EXAMPLES[0], {}, _Showcase(), None)[:-1])
            demo.load(lambda: shown, outputs=scene["inputs"] + scene["outputs"], api_name=False, queue=False)

        def _stop(request: gr.Request):
            return app.stop(request)

        # Stop runs outside the queue: it must reach a session whose job holds the only slot.
        scene["stop"].click(_stop, outputs=scene["status"], api_name="stop", queue=False)
        for tab in (zoom, zoom3d):
            tab["stop"].click(_stop, outputs=tab["status"], api_name=False, queue=False)

        def _leave(request: gr.Request):
            app.leave(request)

        demo.unload(_leave)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    demo.dreamer_app = app
    return demo
