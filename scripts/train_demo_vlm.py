"""Train the shipped demo VLM: a tiny LlavaForConditionalGeneration, from scratch, on synthetic scenes.

    python scripts/train_demo_vlm.py --out src/superneurons/synth/demo_model --work runs/demo_vlm

Seeded; CPU only (2 threads); resumable (checkpoints under --work every --ckpt-every steps: rerun the
same command to continue). Progress goes to <work>/train.log.

Recipe (see the model card for numbers):
- Stage 0: the CLIP-style vision tower alone, dense per-patch labels through a temporary linear head
  (not saved): which (colour, shape) classes a patch shows, the colour / shape / same-shape count of
  the patch's main object, for that object its relation to every other (colour, shape) class in the
  scene (left of, in front of, drawn over), and a dense occlusion label local to the patch: the class
  of the object its top object covers there (or none) and whether its main object is covered there.
  This plays the role of CLIP pretraining.
- Alignment: the projector alone is fitted so that each image token approximates
  embedding(colour word) + embedding(shape word) of its patch's main object (LLaVA's feature-alignment
  stage in spirit), and the same loss stays on during stage 1. Image tokens then share directions with
  the question's words, which turns "does the question match the image" from a purely bilinear
  problem (a long plateau at chance) into one with a first-order gradient.
- Stage 1: the whole LLaVA (vision tower frozen) on the train split's question families plus open
  questions ("what color is the circle ?", "describe the scene ."), question tokens BEFORE the image
  tokens, loss on the answer and end-of-sequence. Training-only linear heads (not saved), on image
  tokens only: after decoder layer 1 every image token predicts what the question asks about (colour
  and shape of its first and second object); after decoder layer `--aux-layer`, whether its patch
  shows the object asked about (with `--patch-answer 1` also the answer there). Nothing reads the
  answer position except the LM loss: no loss asks it for the answer before the last layer.
  Curriculum: single-attribute yes/no, presence, attribute and open questions with at most 3
  objects first, then all families. `training.json` in the saved folder declares every loss.
- Evaluation: greedy `generate()` after reloading the saved folder with `from_pretrained`, on
  held-out (val split) scenes, per family.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared cores: don't spin-wait at barriers

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from superneurons.synth import questions as Q  # noqa: E402
from superneurons.synth.scenes import CANVAS, COLORS, SHAPES, Scene, make_scene  # noqa: E402

PATCH = 16
GRID = CANVAS // PATCH
N_PATCH = GRID * GRID
N_JOINT = len(COLORS) * len(SHAPES)
MIN_PX = 4  # visible pixels for a patch to show an object
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_TOKEN, PAD, UNK, BOS, EOS = "<image>", "<pad>", "<unk>", "<s>", "</s>"
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "USER: {% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image> {% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}{% endif %}"
    "{%- elif message['role'] == 'assistant' -%}"
    " ASSISTANT: {% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}</s> "
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %} ASSISTANT:{% endif -%}"
)
FAMILIES = ("presence", "attribute", "spatial", "occlusion", "depth", "counting", "mcq")
WORD_RE = re.compile(r"\w+|[^\w\s]+")


def log(msg: str, fh) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    fh.write(line + "\n")
    fh.flush()


# ---------------------------------------------------------------- questions used for training only
def open_question(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """Open questions whose answers are words: a cheap, dense signal for binding."""
    objs = scene.objects
    kind = rng.choice(["color", "shape", "count", "describe"])
    if kind == "color":
        unique = [o for o in objs if sum(p.shape == o.shape for p in objs) == 1]
        if unique:
            o = rng.choice(unique)
            return f"What color is the {o.shape}?", o.color
    if kind == "shape":
        unique = [o for o in objs if sum(p.color == o.color for p in objs) == 1]
        if unique:
            o = rng.choice(unique)
            return f"What shape is the {o.color} thing?", o.shape
    if kind == "count":
        s = rng.choice(SHAPES)
        return f"How many {Q.plural(s)} are there?", str(sum(o.shape == s for o in objs))
    ordered = sorted(objs, key=lambda o: o.cx)
    return "Describe the scene.", " , ".join(o.name for o in ordered)


def single_attribute(scene: Scene, rng: random.Random, want: str) -> tuple[str, str, dict] | None:
    """'Is there a red thing in the image?' / 'Is there a circle in the image?' (no binding needed)."""
    if rng.random() < 0.5:
        present = {o.color for o in scene.objects}
        pool = sorted(present) if want == "yes" else [c for c in COLORS if c not in present]
        if not pool:
            return None
        c = rng.choice(pool)
        return f"Is there a {c} thing in the image?", want, {"color": c}
    present = {o.shape for o in scene.objects}
    pool = sorted(present) if want == "yes" else [s for s in SHAPES if s not in present]
    if not pool:
        return None
    s = rng.choice(pool)
    return f"Is there a {s} in the image?", want, {"shape": s}


def referenced(scene: Scene, family: str, text: str, meta: dict) -> list[int]:
    """Draw orders of the objects a yes/no question is about (for the auxiliary per-patch head)."""
    objs = scene.objects
    if family in ("presence", "single"):
        return [o.order for o in objs if o.color == meta.get("color", o.color) and o.shape == meta.get("shape", o.shape)]
    if family == "attribute":
        return [o.order for o in objs if o.shape == meta["shape"]]
    if family in ("spatial", "occlusion", "depth"):
        return [o.order for o in objs if o.name == meta["first"]]
    if family == "counting":
        return [o.order for o in objs if o.shape == meta["shape"]]
    if family == "mcq":
        words = set(WORD_RE.findall(meta["stem"].lower()))
        return [o.order for o in objs if o.shape in words or Q.plural(o.shape) in words]
    return []


COLOR_LIST = list(COLORS)


def question_slots(family: str, meta: dict) -> list[int]:
    """(colour, shape) of the object a yes/no question is about and of its second object; 0 = not
    asked, -100 = no target (open and mcq questions). Targets for the auxiliary 'what was asked' heads."""
    if family in ("open", "mcq"):
        return [-100] * 4

    def cs(color: str | None, shape: str | None) -> list[int]:
        return [COLOR_LIST.index(color) + 1 if color else 0, SHAPES.index(shape) + 1 if shape else 0]

    if family in ("spatial", "occlusion", "depth"):
        (c1, s1), (c2, s2) = (meta["first"].split()[-2:], meta["second"].split()[-2:])
        return cs(c1, s1) + cs(c2, s2)
    return cs(meta.get("color"), meta.get("shape")) + [0, 0]


def build_vocab() -> list[str]:
    rng = random.Random(0)
    words: set[str] = set(["user", ":", "assistant", "yes", "no"])
    for i in range(3000):
        scene = make_scene("vocab", i, 0)
        for fn in Q.FAMILIES.values():
            for want in ("yes", "no"):
                q = fn(scene, rng, want)
                if q:
                    words.update(WORD_RE.findall(q.text.lower()))
        for q in Q.mcq_questions(scene, rng):
            words.update(WORD_RE.findall(q.text.lower()))
        oq = open_question(scene, rng)
        if oq:
            words.update(WORD_RE.findall((oq[0] + " " + oq[1]).lower()))
        sq = single_attribute(scene, rng, "yes")
        if sq:
            words.update(WORD_RE.findall(sq[0].lower()))
    words.update(["thing", "describe", "scene", "what", "color", "shape", "how", "many"] + list(COLORS) + list(SHAPES)
                 + [Q.plural(s) for s in SHAPES] + [str(k) for k in range(6)])
    return [PAD, UNK, BOS, EOS, IMAGE_TOKEN] + sorted(words)


def build_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, vocab.index(BOS))])
    tok.add_special_tokens([PAD, UNK, BOS, EOS, IMAGE_TOKEN])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   pad_token=PAD, padding_side="left", model_max_length=256)
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return fast


def build_model_and_processor(args, tokenizer):
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vision = CLIPVisionConfig(image_size=CANVAS, patch_size=PATCH, hidden_size=args.vis_hidden,
                              intermediate_size=args.vis_hidden * 4, num_hidden_layers=args.vis_layers,
                              num_attention_heads=4, projection_dim=args.vis_hidden)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                       num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=True)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_id,
                         image_seq_length=N_PATCH, vision_feature_select_strategy="default",
                         vision_feature_layer=-1, projector_hidden_act="gelu", tie_word_embeddings=True)
    torch.manual_seed(args.seed)
    model = LlavaForConditionalGeneration(config)
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    gc.do_sample = False
    image_processor = CLIPImageProcessor(size={"shortest_edge": CANVAS}, crop_size={"height": CANVAS, "width": CANVAS},
                                         image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor


def prompt_text(question: str) -> str:
    """The chat template's output with the image expanded, as the processor builds it."""
    return f"USER: {question} " + IMAGE_TOKEN * N_PATCH + f" {question} ASSISTANT:"


# ---------------------------------------------------------------- scene tensors and dense labels
_MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def pixels(scenes: list[Scene]) -> torch.Tensor:
    arr = np.stack([np.asarray(s.render(), dtype=np.float32) for s in scenes]) / 255.0
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (t - _MEAN) / _STD


def patch_counts(scenes: list[Scene]) -> torch.Tensor:
    """[B, 64 patches, 6]: visible pixels of each draw order (0 = background) per patch."""
    idx = torch.from_numpy(np.stack([np.asarray(s.index_map(), dtype=np.int64) for s in scenes]))
    B = len(scenes)
    patch = idx.view(B, GRID, PATCH, GRID, PATCH).permute(0, 1, 3, 2, 4).reshape(B, N_PATCH, -1)
    flat = (torch.arange(B * N_PATCH).view(B, N_PATCH, 1) * 6 + patch).reshape(-1)
    return torch.bincount(flat, minlength=B * N_PATCH * 6).view(B, N_PATCH, 6)


def joint(o) -> int:
    return list(COLORS).index(o.color) * len(SHAPES) + SHAPES.index(o.shape)


def dense_labels(scenes: list[Scene], counts: torch.Tensor) -> dict[str, torch.Tensor]:
    B = len(scenes)
    obj_counts = counts[:, :, 1:]  # [B, P, 5]
    main = obj_counts.argmax(-1)  # draw order of the main object
    has = obj_counts.max(-1).values >= MIN_PX
    out = {"present": torch.zeros(B, N_PATCH, N_JOINT), **main_object_labels(scenes, counts),
           **occlusion_labels(scenes, counts),
           "count": torch.zeros(B, N_PATCH, dtype=torch.long),
           "rel": torch.zeros(B, N_PATCH, 3, N_JOINT), "rel_mask": torch.zeros(B, N_PATCH, 3, N_JOINT)}
    for b, s in enumerate(scenes):
        n = len(s.objects)
        if n == 0:
            continue
        J = torch.tensor([joint(o) for o in s.objects])
        vis = obj_counts[b, :, :n] >= MIN_PX  # [P, n]
        out["present"][b].scatter_(1, J.expand(N_PATCH, n), vis.float())
        cnt = torch.tensor([sum(p.shape == o.shape for p in s.objects) for o in s.objects])
        m = main[b].clamp(max=n - 1)
        h = has[b]
        out["count"][b] = torch.where(h, cnt[m], 0)
        rel = torch.zeros(n, 3, N_JOINT)
        mask = torch.zeros(n, 3, N_JOINT)
        for i, a in enumerate(s.objects):
            for k, c in enumerate(s.objects):
                if i == k:
                    continue
                j = J[k]
                if abs(a.cx - c.cx) >= Q.MIN_GAP:
                    rel[i, 0, j], mask[i, 0, j] = float(a.cx < c.cx), 1.0
                if abs(a.bottom - c.bottom) >= Q.MIN_GAP:
                    rel[i, 1, j], mask[i, 1, j] = float(a.bottom > c.bottom), 1.0
                ov = bool((vis[:, i] & vis[:, k]).any()) or _bbox_near(a, c)
                if ov:
                    rel[i, 2, j], mask[i, 2, j] = float(a.order > c.order), 1.0
        out["rel"][b] = rel[m]
        out["rel_mask"][b] = mask[m] * h.view(-1, 1, 1).float()
    return out


def main_object_labels(scenes: list[Scene], counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """[B, P] colour (1..) and shape (1..) of each patch's main object (the one with the most visible
    pixels there, at least MIN_PX), 0 on background."""
    obj = counts[:, :, 1:]
    main, has = obj.argmax(-1), obj.max(-1).values >= MIN_PX
    col = torch.zeros(len(scenes), obj.shape[-1], dtype=torch.long)
    shp = torch.zeros_like(col)
    for b, s in enumerate(scenes):
        for i, o in enumerate(s.objects):
            col[b, i], shp[b, i] = COLOR_LIST.index(o.color) + 1, SHAPES.index(o.shape) + 1
    return {"color": torch.where(has, col.gather(1, main), 0), "shape": torch.where(has, shp.gather(1, main), 0)}


def full_masks(scenes: list[Scene]) -> torch.Tensor:
    """[B, 5, H, W] bool: each object's whole silhouette (also where a later-drawn object covers it)."""
    from PIL import Image, ImageDraw

    from superneurons.synth.scenes import _draw_shape

    out = np.zeros((len(scenes), 5, CANVAS, CANVAS), dtype=bool)
    for b, s in enumerate(scenes):
        for o in s.objects:
            m = Image.new("L", (CANVAS, CANVAS), 0)
            _draw_shape(ImageDraw.Draw(m), o.shape, o.bbox, 1)
            out[b, o.order] = np.asarray(m, dtype=bool)
    return torch.from_numpy(out)


def occlusion_labels(scenes: list[Scene], counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dense per-patch "drawn over" labels, local enough for a patch to learn them.

    top [B, P]: 1 + the (colour, shape) class of the patch's top object (0 = background).
    under [B, P]: 1 + the (colour, shape) class of the object the patch's top object covers in this
    patch (the one with the most covered pixels there, >= MIN_PX), 0 = covers nothing here; the top
    object is the latest-drawn one with >= MIN_PX visible pixels in the patch.
    covered [B, P]: whether the patch's main object (most visible pixels) is partly covered there."""
    B = len(scenes)
    idx = np.stack([np.asarray(s.index_map(), dtype=np.int64) for s in scenes])  # [B, H, W]
    full = full_masks(scenes).numpy()  # [B, 5, H, W]
    b, k, y, x = np.nonzero(full)
    patch = (y // PATCH) * GRID + x // PATCH
    key = ((b * N_PATCH + patch) * 5 + k) * 6 + idx[b, y, x]
    cov = torch.from_numpy(np.bincount(key, minlength=B * N_PATCH * 30).reshape(B, N_PATCH, 5, 6)[..., 1:])
    cov = cov.float().masked_fill(torch.eye(5, dtype=torch.bool), 0.0)  # pixels of k's silhouette showing j, per patch
    obj = counts[:, :, 1:]
    main, has = obj.argmax(-1), obj.max(-1).values >= MIN_PX  # [B, P]
    vis = obj >= MIN_PX
    top = (vis * torch.arange(1, 6)).argmax(-1)  # the latest-drawn object visible in the patch
    under_px = cov.gather(3, top.view(B, N_PATCH, 1, 1).expand(-1, -1, 5, 1)).squeeze(-1)  # [B, P, k]
    jt = torch.zeros(B, 5, dtype=torch.long)
    for b, s in enumerate(scenes):
        for o in s.objects:
            jt[b, o.order] = joint(o) + 1
    best = under_px.max(-1)
    under = torch.where(has & (best.values >= MIN_PX), jt.gather(1, best.indices), 0)
    top_cls = torch.where(has, jt.gather(1, top), 0)
    hidden = cov.sum(-1).gather(2, main.unsqueeze(-1)).squeeze(-1)  # covered pixels of the main object
    return {"top": top_cls, "under": under, "covered": (hidden >= MIN_PX).float(), "obj_mask": has.float()}


def _bbox_near(a, c) -> bool:
    return a.bbox[0] < c.bbox[2] and c.bbox[0] < a.bbox[2] and a.bbox[1] < c.bbox[3] and c.bbox[1] < a.bbox[3]


HEAD_SIZES = {"present": N_JOINT, "color": 5, "shape": 4, "count": 5, "rel": 3 * N_JOINT,
              "top": N_JOINT + 1, "under": N_JOINT + 1, "covered": 1}


def stage0_loss(head: torch.nn.Linear, feats: torch.Tensor, lab: dict[str, torch.Tensor], occ_weight: float = 1.0):
    out = head(feats)  # [B, P, sum]
    parts = torch.split(out, list(HEAD_SIZES.values()), dim=-1)
    p = dict(zip(HEAD_SIZES, parts, strict=True))
    loss = F.binary_cross_entropy_with_logits(p["present"], lab["present"])
    for k in ("color", "shape", "count"):
        loss = loss + F.cross_entropy(p[k].reshape(-1, p[k].shape[-1]), lab[k].reshape(-1))
    rel_logits = p["rel"].view(*p["rel"].shape[:2], 3, N_JOINT)
    rl = F.binary_cross_entropy_with_logits(rel_logits, lab["rel"], reduction="none")
    loss = loss + (rl * lab["rel_mask"]).sum() / lab["rel_mask"].sum().clamp(min=1)
    if occ_weight > 0:
        om = lab["obj_mask"]
        ul = sum(F.cross_entropy(p[k].reshape(-1, N_JOINT + 1), lab[k].reshape(-1), reduction="none")
                 for k in ("top", "under"))
        cl = F.binary_cross_entropy_with_logits(p["covered"].squeeze(-1), lab["covered"], reduction="none")
        loss = loss + occ_weight * ((ul.view(om.shape) + cl) * om).sum() / om.sum().clamp(min=1)
    obj = lab["shape"] > 0
    with torch.no_grad():
        acc = {"shape": (p["shape"].argmax(-1) == lab["shape"])[obj].float().mean().item(),
               "color": (p["color"].argmax(-1) == lab["color"])[obj].float().mean().item(),
               "count": (p["count"].argmax(-1) == lab["count"])[obj].float().mean().item(),
               "present": ((p["present"] > 0) == (lab["present"] > 0.5)).all(-1).float().mean().item()}
        rm = lab["rel_mask"] > 0
        for i, name in enumerate(("left", "front", "over")):
            mi = rm[:, :, i]
            acc[name] = ((rel_logits[:, :, i] > 0) == (lab["rel"][:, :, i] > 0.5))[mi].float().mean().item()
        if "under" in lab:  # readouts of the dense occlusion labels, on the patches where they are defined
            under_pred = p["under"].argmax(-1)
            at = lab["under"] > 0
            acc["under"] = (under_pred == lab["under"])[at].float().mean().item()  # on the patches that cover something
            acc["top_under"] = ((under_pred == lab["under"]) & (p["top"].argmax(-1) == lab["top"]))[at].float().mean().item()
            acc["under_any"] = ((under_pred > 0) == at)[obj].float().mean().item()  # "covers something here"
            cv = (p["covered"].squeeze(-1) > 0) == (lab["covered"] > 0.5)
            pos = lab["covered"] > 0.5
            acc["covered"] = 0.5 * (cv[pos].float().mean().item() + cv[obj & ~pos].float().mean().item())  # balanced
    return loss, acc


# ---------------------------------------------------------------- stage-1 batches
def family_weights(frac: float, args) -> dict[str, float]:
    if args.only:
        return dict.fromkeys(args.only.split(","), 1.0)
    if args.init_from is not None:  # second run: the POPE-like families at high weight, the rest kept alive
        return {"single": 0.1, "open": 0.1, "presence": 0.3, "attribute": 0.25, "spatial": 0.04,
                "occlusion": 0.04, "depth": 0.04, "counting": 0.08, "mcq": 0.05}
    if frac < args.easy_frac:
        return {"single": 0.3, "open": 0.3, "presence": 0.2, "attribute": 0.2}
    return {"single": 0.05, "open": 0.15, "presence": 0.2, "attribute": 0.15, "spatial": 0.1,
            "occlusion": 0.1, "depth": 0.1, "counting": 0.1, "mcq": 0.05}


def make_item(scene: Scene, family: str, rng: random.Random) -> tuple[str, str, str, dict] | None:
    want = rng.choice(("yes", "no"))
    if family == "open":
        oq = open_question(scene, rng)
        return (oq[0], oq[1], family, {}) if oq else None
    if family == "single":
        r = single_attribute(scene, rng, want)
        return (r[0], r[1], family, r[2]) if r else None
    if family == "mcq":
        qs = Q.mcq_questions(scene, rng)
        if not qs:
            return None
        q = rng.choice([q for q in qs if q.label == want] or qs)
        return q.text, q.label, family, q.meta
    q = Q.FAMILIES[family](scene, rng, want)
    return (q.text, q.label, family, q.meta) if q else None


def make_batch(step: int, args, tokenizer, excluded: set, frac: float):
    second = args.init_from is not None  # a continued run draws other train scenes than the first
    rng = random.Random(f"batch/{args.seed}/{step}" + ("/2" if second else ""))
    weights = family_weights(frac, args)
    names, probs = list(weights), list(weights.values())
    max_obj = 3 if frac < args.easy_frac else 5
    scenes, items = [], []
    idx = step * args.batch * 2 + (50_000_000 if second else 0)
    while len(items) < args.batch:
        idx += 1
        scene = make_scene("train", idx, args.seed, max_objects=max_obj)
        if scene.signature() in excluded:
            continue
        fam = rng.choices(names, probs)[0]
        item = make_item(scene, fam, rng)
        if item is None:
            continue
        scenes.append(scene)
        items.append(item)
    prompts = [prompt_text(q) for q, *_ in items]
    enc = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    ans = tokenizer([a for _, a, *_ in items], add_special_tokens=False)["input_ids"]
    seqs = [p + a + [tokenizer.eos_token_id] for p, a in zip(enc, ans, strict=True)]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), T), -100)
    attn = torch.zeros(len(seqs), T, dtype=torch.long)
    weight = torch.ones(len(seqs))
    for i, (p, s) in enumerate(zip(enc, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        labels[i, len(p): len(s)] = torch.tensor(s[len(p):])  # shifted by one in lm_loss
        if items[i][2] != "open":
            weight[i] = args.yn_weight
    counts = patch_counts(scenes)
    slots = torch.tensor([question_slots(fam, meta) for _, _, fam, meta in items])
    aux = torch.full((len(seqs), N_PATCH), -100)
    for i, (scene, (q, a, fam, meta)) in enumerate(zip(scenes, items, strict=True)):
        if fam == "open":
            continue
        refs = referenced(scene, fam, q, meta)
        hit = torch.zeros(N_PATCH, dtype=torch.bool)
        for r in refs:
            hit |= counts[i, :, r + 1] >= MIN_PX
        aux[i] = torch.where(hit, 2 if (a == "yes" and args.patch_answer) else 1, 0)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "pixel_values": pixels(scenes),
            "weight": weight, "aux": aux, "slots": slots,
            "objects": main_object_labels(scenes, counts),
            "families": [it[2] for it in items]}


@torch.no_grad()
def whiten_projector(model, args) -> None:
    """Data-dependent projector init: standardised vision features in, image tokens out with zero mean
    and the norm of a text embedding (a random projector makes image tokens ~7x larger than text
    tokens and nearly alike)."""
    scenes = [make_scene("train", 20_000_000 + i, args.seed) for i in range(256)]
    f = model.model.vision_tower(pixel_values=pixels(scenes), output_hidden_states=True).hidden_states[-1][:, 1:]
    f = f.reshape(-1, f.shape[-1])
    mu, sd = f.mean(0), f.std(0).clamp(min=1e-3)
    proj = model.model.multi_modal_projector
    w1 = proj.linear_1.weight / sd
    proj.linear_1.weight.copy_(w1)
    proj.linear_1.bias.copy_(-(w1 @ mu))
    c = 1.0 / proj.linear_1(f).std()
    proj.linear_1.weight.mul_(c)
    proj.linear_1.bias.mul_(c)
    h = proj.act(proj.linear_1(f))
    w2 = proj.linear_2.weight
    centred = (h - h.mean(0)) @ w2.T
    scale = model.get_input_embeddings().weight.norm(dim=-1).mean() / centred.norm(dim=-1).mean()
    proj.linear_2.weight.mul_(scale)
    proj.linear_2.bias.copy_(-(proj.linear_2.weight @ h.mean(0)))


SLOT_SIZES = (5, 4, 5, 4)  # colour, shape of the first object; colour, shape of the second (0 = none)


class AuxHeads(torch.nn.Module):
    """Training-only linear heads (never saved with the model); see the module docstring."""

    def __init__(self, hidden: int):
        super().__init__()
        self.slots_patch = torch.nn.Linear(hidden, sum(SLOT_SIZES))  # layer 1, every image token
        self.patch = torch.nn.Linear(hidden, 3)  # layer aux_layer, every image token
        # no head reads the answer position: only the LM loss on the answer tokens does


def slot_loss(logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of [..., sum(SLOT_SIZES)] logits against [..., 4] slot targets."""
    parts = torch.split(logits, SLOT_SIZES, dim=-1)
    return sum(F.cross_entropy(lg.reshape(-1, n), slots[..., i].reshape(-1), ignore_index=-100)
               for i, (lg, n) in enumerate(zip(parts, SLOT_SIZES, strict=True))) / len(SLOT_SIZES)


def word_targets(model, tokenizer, lab: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, P, D]: for each patch, embedding(colour word) + embedding(shape word) of its main object
    (`main_object_labels`; 0 on background). Image tokens pulled toward these share directions with
    the question's words."""
    emb = model.get_input_embeddings().weight.detach()
    col = torch.tensor([0] + tokenizer.convert_tokens_to_ids(COLOR_LIST))
    shp = torch.tensor([0] + tokenizer.convert_tokens_to_ids(list(SHAPES)))
    return (emb[col[lab["color"]]] * (lab["color"] > 0).unsqueeze(-1)
            + emb[shp[lab["shape"]]] * (lab["shape"] > 0).unsqueeze(-1))


def align_loss(model, tokenizer, lab: dict[str, torch.Tensor], image_tokens: torch.Tensor) -> torch.Tensor:
    """Projector outputs (image tokens, [B, P, D] or [B*P, D]) vs `word_targets`, relative to the
    squared norm of a word embedding."""
    target = word_targets(model, tokenizer, lab)
    if isinstance(image_tokens, (list, tuple)):  # transformers >= 5.24: one tensor per image
        image_tokens = torch.cat([t.reshape(-1, t.shape[-1]) for t in image_tokens])
    out = image_tokens.reshape(target.shape)
    scale = model.get_input_embeddings().weight.detach().norm(dim=-1).mean() ** 2
    return ((out - target) ** 2).sum(-1).mean() / scale


def pre_align(model, tokenizer, args, fh) -> None:
    """Projector alone (LLaVA's feature-alignment stage in spirit): image tokens toward word embeddings."""
    proj = model.model.multi_modal_projector
    opt = torch.optim.Adam(proj.parameters(), lr=3e-3)
    for step in range(args.align_steps):
        scenes = [make_scene("train", 30_000_000 + step * 64 + i, args.seed) for i in range(64)]
        with torch.no_grad():
            f = model.model.vision_tower(pixel_values=pixels(scenes), output_hidden_states=True).hidden_states[-1][:, 1:]
        lab = main_object_labels(scenes, patch_counts(scenes))
        loss = align_loss(model, tokenizer, lab, proj(f))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.align_steps - 1:
            log(f"align step {step} loss {loss.item():.3f}", fh)


def lm_loss(model, heads: AuxHeads, batch, args, image_id: int, tokenizer):
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], output_hidden_states=True)
    logits = out.logits[:, :-1]
    tgt = batch["labels"][:, 1:]
    tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view(tgt.shape)
    m = (tgt != -100).float()
    per = (tok * m).sum(1) / m.sum(1).clamp(min=1)
    loss = (per * batch["weight"]).sum() / batch["weight"].sum()
    aux_loss = torch.tensor(0.0)
    if args.aux_weight > 0:  # image-token heads only (see TRAINING_HEADS)
        img = batch["input_ids"] == image_id
        B = img.shape[0]
        h1 = out.hidden_states[1][img].view(B, N_PATCH, -1)
        hp = out.hidden_states[args.aux_layer][img].view(B, N_PATCH, -1)
        aux_loss = (slot_loss(heads.slots_patch(h1), batch["slots"].unsqueeze(1).expand(-1, N_PATCH, -1))
                    + F.cross_entropy(heads.patch(hp).reshape(-1, 3), batch["aux"].reshape(-1), ignore_index=-100))
        loss = loss + args.aux_weight * aux_loss
    if args.align_weight > 0:
        loss = loss + args.align_weight * align_loss(model, tokenizer, batch["objects"], out.image_hidden_states)
    with torch.no_grad():
        first = (tgt != -100).float().argmax(1)
        pred = logits[torch.arange(len(first)), first].argmax(-1)
        gold = tgt[torch.arange(len(first)), first]
        correct = (pred == gold).float()
    return loss, aux_loss, correct


# ---------------------------------------------------------------- evaluation
def eval_scenes(split: str, n: int, seed: int) -> list[Scene]:
    return [make_scene(split, i, seed) for i in range(n)]


def eval_items(scenes: list[Scene], family: str, seed: int) -> list[tuple[Scene, str, str, dict]]:
    rng = random.Random(f"eval/{seed}/{family}")
    out = []
    for i, s in enumerate(scenes):
        if family == "mcq":
            out += [(s, q.text, q.label, q.meta) for q in Q.mcq_questions(s, rng)]
            continue
        want = "yes" if i % 2 == 0 else "no"
        q = Q.FAMILIES[family](s, rng, want)
        if q is not None:
            out.append((s, q.text, q.label, q.meta))
    return out


@torch.no_grad()
def first_token_accuracy(model, tokenizer, items, batch: int = 64) -> tuple[float, float]:
    """Accuracy of the argmax first answer token (what greedy generate answers first) and yes-rate."""
    model.eval()
    yes_id = tokenizer.convert_tokens_to_ids("yes")
    right, yes = 0, 0
    for k in range(0, len(items), batch):
        chunk = items[k: k + batch]
        enc = tokenizer([prompt_text(q) for _, q, _, _ in chunk], padding=True, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       pixel_values=pixels([s for s, *_ in chunk]), logits_to_keep=1).logits[:, -1]
        pred = logits.argmax(-1)
        for p, (_, _, a, _) in zip(pred.tolist(), chunk, strict=True):
            yes += p == yes_id
            right += (p == yes_id) == (a == "yes")
    model.train()
    return right / len(items), yes / len(items)


@torch.no_grad()
def generate_accuracy(folder: Path, items, batch: int = 32) -> dict:
    """Greedy generate() on the reloaded model: accuracy of the parsed yes/no answers."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    proc = AutoProcessor.from_pretrained(folder)
    right = yes = other = 0
    kinds: dict[str, list[int]] = {}
    for k in range(0, len(items), batch):
        chunk = items[k: k + batch]
        texts = [proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
                                          add_generation_prompt=True) for _, q, _, _ in chunk]
        enc = proc(images=[s.render() for s, *_ in chunk], text=texts, return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
        answers = proc.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for ans, (_, _, a, meta) in zip(answers, chunk, strict=True):
            word = ans.strip().split()[0] if ans.strip() else ""
            ok = word == a
            right += ok
            yes += word == "yes"
            other += word not in ("yes", "no")
            kinds.setdefault(meta.get("kind", "all"), []).append(int(ok))
    return {"accuracy": right / len(items), "yes_rate": yes / len(items), "non_yes_no": other / len(items),
            "n": len(items), "by_kind": {k: sum(v) / len(v) for k, v in sorted(kinds.items())}}


# ---------------------------------------------------------------- main
def lr_at(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("src/superneurons/synth/demo_model"))
    ap.add_argument("--work", type=Path, default=Path("runs/demo_vlm"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--vis-layers", type=int, default=3)
    ap.add_argument("--vis-hidden", type=int, default=96)
    ap.add_argument("--stage0-steps", type=int, default=4000)
    ap.add_argument("--stage0-batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vision-lr-scale", type=float, default=0.0, help="0 freezes the vision tower in stage 1")
    ap.add_argument("--floor", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--easy-frac", type=float, default=0.15)
    ap.add_argument("--yn-weight", type=float, default=2.0)
    ap.add_argument("--aux-weight", type=float, default=0.5)
    ap.add_argument("--occ-weight", type=float, default=1.0, help="stage 0: dense per-patch occlusion labels (0: off)")
    ap.add_argument("--patch-answer", type=int, default=0,
                    help="1: the layer-k image-token head also predicts the answer at the asked object's patches")
    ap.add_argument("--align-weight", type=float, default=1.0, help="image tokens toward colour+shape word embeddings")
    ap.add_argument("--align-steps", type=int, default=300, help="projector-only alignment steps before stage 1")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="continue from a saved model folder (skips stage 0 and the easy phase)")
    ap.add_argument("--only", default="", help="pilot: train only these comma-separated families (e.g. open,single)")
    ap.add_argument("--whiten", type=int, default=1, help="data-dependent projector init (1) or plain random (0)")
    ap.add_argument("--stage0-from", type=Path, default=None, help="reuse a stage-0 vision tower (<work>/stage0.pt)")
    ap.add_argument("--aux-layer", type=int, default=2, help="hidden_states index (output of decoder layer k)")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds for stages 0+1; stage 1 schedules lr/curriculum by wall time to end in it (0: by steps)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--eval-scenes", type=int, default=200)
    ap.add_argument("--final-scenes", type=int, default=400)
    ap.add_argument("--no-save", action="store_true", help="pilot run: train and evaluate, save nothing to --out")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    fh = (args.work / "train.log").open("a")
    log(f"args {vars(args)}", fh)
    t_start = time.time()
    ckpt_path = args.work / "checkpoint.pt"
    state = torch.load(ckpt_path, weights_only=False) if ckpt_path.is_file() else None
    elapsed_before = state["elapsed"] if state else 0.0

    vocab = build_vocab()
    tokenizer = build_tokenizer(vocab)
    model, processor = build_model_and_processor(args, tokenizer)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vocab {len(vocab)}; parameters {n_params:,}", fh)

    held_out = {"val": eval_scenes("val", args.final_scenes, args.seed), "probe": eval_scenes("probe", args.final_scenes, args.seed)}
    excluded = {s.signature() for sc in held_out.values() for s in sc}
    pilot_items = {f: eval_items(held_out["val"][: args.eval_scenes], f, args.seed) for f in FAMILIES}

    vt = model.model.vision_tower
    head0 = torch.nn.Linear(args.vis_hidden, sum(HEAD_SIZES.values()))
    heads = AuxHeads(args.hidden)
    stage, step0 = (state["stage"], state["step"]) if state else (0, 0)
    if state:
        model.load_state_dict(state["model"])
        head0.load_state_dict(state["head0"])
        heads.load_state_dict(state["heads"])
        log(f"resumed at stage {stage} step {step0} ({elapsed_before:.0f}s already spent)", fh)

    def elapsed() -> float:
        return elapsed_before + time.time() - t_start

    def save_ckpt(stage: int, step: int, opt) -> None:
        torch.save({"stage": stage, "step": step, "model": model.state_dict(), "head0": head0.state_dict(),
                    "heads": heads.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed()}, ckpt_path)

    if args.init_from is not None and state is None:
        from transformers import LlavaForConditionalGeneration

        model.load_state_dict(LlavaForConditionalGeneration.from_pretrained(args.init_from).state_dict())
        stage, args.easy_frac, args.whiten = 1, 0.0, 0
        log(f"initialised from {args.init_from}", fh)
    # ---- stage 0: vision tower with dense per-patch labels
    if stage == 0 and args.stage0_from is not None:
        s0 = torch.load(args.stage0_from, weights_only=False)
        vt.load_state_dict(s0["vision_tower"])
        elapsed_before += s0["elapsed"]
        stage = 1
        log(f"stage 0 reused from {args.stage0_from} ({s0['elapsed']:.0f}s counted)", fh)
    if stage == 0:
        opt = torch.optim.AdamW(list(vt.parameters()) + list(head0.parameters()), lr=2e-3, weight_decay=0.0)
        if state and state["stage"] == 0:
            opt.load_state_dict(state["opt"])
        t0 = time.time()
        for step in range(step0, args.stage0_steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.stage0_steps, 2e-3, 100, 0.05)
            scenes = [make_scene("train", 10_000_000 + step * args.stage0_batch + i, args.seed)
                      for i in range(args.stage0_batch)]
            scenes = [s for s in scenes if s.signature() not in excluded]
            lab = dense_labels(scenes, patch_counts(scenes))
            feats = vt(pixel_values=pixels(scenes)).last_hidden_state[:, 1:]
            loss, acc = stage0_loss(head0, feats, lab, args.occ_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vt.parameters(), 1.0)
            opt.step()
            if step % 100 == 0 or step == args.stage0_steps - 1:
                accs = " ".join(f"{k} {v:.2f}" for k, v in acc.items())
                log(f"stage0 step {step} loss {loss.item():.3f} {accs} ({(time.time() - t0) / (step - step0 + 1):.3f}s/step)", fh)
            if (step + 1) % args.ckpt_every == 0:
                save_ckpt(0, step + 1, opt)
        stage, step0, state = 1, 0, None
        save_ckpt(1, 0, torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]))
        torch.save({"vision_tower": vt.state_dict(), "elapsed": elapsed()}, args.work / "stage0.pt")
        log(f"stage0 done at {elapsed():.0f}s", fh)

    # ---- stage 1: the whole LLaVA
    if step0 == 0 and args.whiten:
        whiten_projector(model, args)
        log("projector initialised on whitened vision features", fh)
    if step0 == 0 and args.align_steps:
        pre_align(model, tokenizer, args, fh)
    vis_params = list(vt.parameters())
    vis_ids = {id(p) for p in vis_params}
    other = [p for p in model.parameters() if id(p) not in vis_ids] + list(heads.parameters())
    groups = [{"params": other, "scale": 1.0}]
    if args.vision_lr_scale > 0:
        groups.append({"params": vis_params, "scale": args.vision_lr_scale})
    else:  # frozen, as LLaVA freezes its CLIP: LM gradients of an untrained LM erase the stage-0 shape features
        vt.requires_grad_(False)
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    if state and state["stage"] == 1 and state["step"] > 0:
        opt.load_state_dict(state["opt"])
    model.train()
    t0 = time.time()
    hist: dict[str, list[float]] = {}
    last_step = step0
    stage1_start = elapsed()
    budget1 = args.time_budget - stage1_start
    for step in range(step0, args.steps):
        # progress by steps or by wall time, whichever is further: the schedule always completes
        frac = step / args.steps
        if args.time_budget > 0:
            frac = max(frac, (elapsed() - stage1_start) / max(budget1, 1.0))
        if frac >= 1.0:
            log(f"time budget reached at step {step}", fh)
            break
        lr = lr_at(int(frac * args.steps), args.steps, args.lr, args.warmup, args.floor)
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        batch = make_batch(step, args, tokenizer, excluded, frac)
        loss, aux_loss, correct = lm_loss(model, heads, batch, args, image_id, tokenizer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for fam, c in zip(batch["families"], correct.tolist(), strict=True):
            hist.setdefault(fam, []).append(c)
        last_step = step + 1
        if step % 100 == 0:
            tr = " ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(hist.items()))
            log(f"stage1 step {step} loss {loss.item():.3f} aux {aux_loss.item():.3f} lr {lr:.2e} | train {tr} "
                f"({(time.time() - t0) / (step - step0 + 1):.3f}s/step, {elapsed():.0f}s)", fh)
            hist = {}
        if (step + 1) % args.eval_every == 0:
            res = {f: first_token_accuracy(model, tokenizer, it) for f, it in pilot_items.items()}
            log("eval (first token, val) " + " ".join(f"{f} {a:.2f}/y{y:.2f}" for f, (a, y) in res.items()), fh)
        if (step + 1) % args.ckpt_every == 0:
            save_ckpt(1, step + 1, opt)
    train_time = elapsed()
    log(f"stage1 done: {last_step} steps, {train_time:.0f}s total", fh)

    res = {f: first_token_accuracy(model, tokenizer, it) for f, it in pilot_items.items()}
    log("final eval (first token, val) " + " ".join(f"{f} {a:.2f}/y{y:.2f}" for f, (a, y) in res.items()), fh)
    if args.no_save:
        return
    save(model, processor, args, fh, last_step, train_time, n_params, held_out)


def save(model, processor, args, fh, steps: int, train_time: float, n_params: int, held_out) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(args.out, safe_serialization=True)
    processor.save_pretrained(args.out)
    check_processor(processor, args.out)
    size = sum(p.stat().st_size for p in args.out.glob("*.safetensors"))
    log(f"saved to {args.out} ({size / 1e6:.2f} MB of safetensors)", fh)
    results = {}
    for f in FAMILIES:
        items = eval_items(held_out["val"], f, args.seed)
        results[f] = generate_accuracy(args.out, items)
        log(f"generate (val) {f}: {json.dumps(results[f])}", fh)
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "training.json").write_text(json.dumps(training_record(args, steps, train_time, results), indent=2) + "\n")
    write_card(args, steps, train_time, n_params, size, results)
    log("model card written", fh)


def training_record(args, steps: int, train_time: float, results: dict | None = None) -> dict:
    """training.json: every loss and head of this run, what it reads, after which decoder layer, its
    weight; the report turns `heads` into its disclosure sentence (superneurons.report.disclosure)."""
    from superneurons.report.disclosure import training_disclosure

    heads = [{"name": "LM loss on the answer tokens", "stage": "stage1", "reads": "answer position (LM loss only)",
              "layer": "final (LM head)", "weight": 1.0, "answer": True,
              "target": f"answer tokens and </s>; yes/no questions weighted x{args.yn_weight}"}]
    if args.align_weight > 0:
        heads.append({"name": "projector alignment", "stage": "alignment+stage1", "reads": "image tokens",
                      "layer": "projector output", "weight": args.align_weight, "answer": False,
                      "target": "embedding(colour word) + embedding(shape word) of the patch's main object"})
    if args.aux_weight > 0:
        heads += [{"name": "what was asked", "stage": "stage1", "reads": "image tokens", "layer": 1,
                   "weight": args.aux_weight, "answer": False,
                   "target": "colour and shape of the question's first and second object"},
                  {"name": "per-patch match", "stage": "stage1", "reads": "image tokens", "layer": args.aux_layer,
                   "weight": args.aux_weight, "answer": bool(args.patch_answer),
                   "target": "whether the patch shows the object asked about"
                   + (" and the yes/no answer there" if args.patch_answer else ""),
                   "note": f"for presence questions, a matching patch is itself the answer, so image tokens carry "
                           f"patch-level evidence for it after decoder layer {args.aux_layer}"}]
    vision = [{"name": "stage-0 per-patch labels", "stage": "stage0", "reads": "vision tower (patch tokens)",
               "weight": 1.0, "target": "(colour, shape) classes shown; main object's colour / shape / "
               "same-shape count; its left-of / in-front-of / drawn-over relation to every other class"}]
    if args.occ_weight > 0:
        vision.append({"name": "stage-0 dense occlusion", "stage": "stage0", "reads": "vision tower (patch tokens)",
                       "weight": args.occ_weight, "target": "class of the object the patch's top object covers "
                       "in the patch (or none); whether the patch's main object is covered there"})
    rec = {"schema": 1, "script": "scripts/train_demo_vlm.py", "seed": args.seed, "threads": args.threads,
           "steps": {"stage0": args.stage0_steps, "align": args.align_steps, "stage1": steps},
           "minutes": round(train_time / 60, 1), "heads": heads, "vision_heads": vision,
           "answer_position_heads": [h["name"] for h in heads if h["reads"] == "answer position"],
           "deep_supervision": False}
    rec["disclosure"] = training_disclosure(rec)
    if results is not None:
        rec["held_out_generate_accuracy"] = {f: round(r["accuracy"], 3) for f, r in results.items()}
    return rec


def check_processor(processor, folder: Path) -> None:
    """The processor's token ids and pixels must equal what training fed the model."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    scene = make_scene("val", 0, 0)
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a red circle in the image?"}]}],
                                    add_generation_prompt=True)
    enc = proc(images=[scene.render()], text=[text], return_tensors="pt")
    ids = processor.tokenizer([prompt_text("Is there a red circle in the image?")])["input_ids"][0]
    if enc["input_ids"][0].tolist() != ids:
        sys.exit(f"processor ids differ from training ids:\n{enc['input_ids'][0].tolist()}\n{ids}")
    diff = (enc["pixel_values"][0] - pixels([scene])[0]).abs().max().item()
    if diff > 1e-2:
        sys.exit(f"processor pixels differ from training pixels by {diff}")


def write_card(args, steps: int, train_time: float, n_params: int, size: int, results: dict) -> None:
    rows = "\n".join(f"| {f} | {r['accuracy']:.3f} | {r['yes_rate']:.2f} | {r['n']} | "
                     + ", ".join(f"{k} {v:.2f}" for k, v in r["by_kind"].items()) + " |" for f, r in results.items())
    card = CARD.format(layers=args.layers, hidden=args.hidden, vis_layers=args.vis_layers, vis_hidden=args.vis_hidden,
                       n_params=n_params, size=size / 1e6, steps=steps, stage0=args.stage0_steps, batch=args.batch,
                       lr=args.lr, aux_weight=args.aux_weight, aux_layer=args.aux_layer, align_steps=args.align_steps,
                       align_weight=args.align_weight, seed=args.seed,
                       minutes=train_time / 60, rows=rows, n_val=args.final_scenes, easy=args.easy_frac,
                       yn=args.yn_weight, cmd=" ".join(sys.argv), status=status_note(results),
                       stage0_batch=args.stage0_batch, occ_weight=args.occ_weight,
                       patch_answer=" and the yes/no answer there" if args.patch_answer else "",
                       disclosure=training_record(args, steps, train_time)["disclosure"])
    (args.out / "MODEL_CARD.md").write_text(card)


def status_note(results: dict) -> str:
    """An honest line on the issue's target (>= 0.85 on presence and attribute), from the measured numbers."""
    low = [f for f in ("presence", "attribute") if results.get(f, {}).get("accuracy", 0.0) < 0.85]
    chance = [f for f, r in results.items() if abs(r["accuracy"] - (0.75 if f == "mcq" else 0.5)) < 0.05]
    note = "**Status: meets the target (>= 0.85 on presence and attribute).**" if not low else (
        f"**Status: below the target (>= 0.85) on {', '.join(low)}.** This model does not yet bind colour "
        "and shape; treat its Super Neurons results as those of a weak model.")
    if chance:
        note += f" At chance (within 0.05): {', '.join(chance)}."
    return note


CARD = """# superneurons demo VLM

A tiny `LlavaForConditionalGeneration` trained from scratch on the synthetic scenes of
`superneurons.synth` (coloured circles / squares / triangles on a grey 64x64 canvas) by
`scripts/train_demo_vlm.py`. It exists so that the library has a real, trained VLM to find
Super Neurons in without downloading weights. It is not a general model.

## Architecture
- Vision: CLIP vision tower, image 64, patch 16 (16 image tokens, CLS dropped), hidden {vis_hidden},
  {vis_layers} layers, 4 heads.
- Projector: LLaVA MLP (gelu).
- Language model: Llama, hidden {hidden}, intermediate {hidden}*3, {layers} decoder layers, 4 heads,
  tied embeddings. {n_params:,} parameters, {size:.2f} MB of safetensors (fp32).
- Tokenizer: `tokenizers` WordLevel over the benchmark vocabulary (lower-cased, whitespace/punctuation
  split) + `<pad> <unk> <s> </s> <image>`.
- Chat template: `USER: {{question}} <image> ASSISTANT:` - the question comes BEFORE the image tokens,
  so image tokens can attend to the question. Answers are one word (`yes` / `no`) then `</s>`.

## Training (seed {seed}, 2 CPU threads, {minutes:.1f} minutes in total)
- Data: the `train` split's scene stream of `superneurons.synth` (seed {seed}); scenes identical to a
  val/probe scene are skipped.
- Stage 0 ({stage0} steps, batch {stage0_batch}): the vision tower alone, with a temporary linear head on each
  patch (not saved): the (colour, shape) classes the patch shows, the colour / shape / same-shape
  count of its main object, and that object's relations (left of, in front of, drawn over) to every
  other (colour, shape) class in the scene; plus a dense occlusion label (weight {occ_weight}): the
  (colour, shape) class of the object that the patch's top object covers in this patch (or none), and
  whether the patch's main object is itself covered there.
- Alignment ({align_steps} steps, batch 64): the projector alone, image tokens toward
  embedding(colour word) + embedding(shape word) of the patch's main object; the same loss (weight
  {align_weight}) stays on in stage 1.
- Stage 1 ({steps} steps, batch {batch}): the whole model, AdamW lr {lr} (vision tower frozen), betas
  (0.9, 0.98), warmup 200, cosine, clip 1.0; loss on the answer tokens and `</s>`, yes/no questions
  weighted x{yn}. First {easy:.0%} of steps: at most 3 objects, single-attribute yes/no ("is there a
  red thing ?"), open questions ("what color is the circle ?", "describe the scene .") and
  presence/attribute; then every family. Training-only linear heads (weight {aux_weight}, not saved),
  on image tokens only: after decoder layer 1 they predict what the question asks about (colour /
  shape of its objects); after decoder layer {aux_layer}, whether their patch shows the object asked
  about{patch_answer}. **Nothing reads the answer position except the LM loss on the answer tokens**:
  no head there, no deep supervision. Every loss, what it reads and its weight: `training.json`.

**Disclosure (generated from `training.json`, shown first in the demo report's summary):** {disclosure}

## Held-out accuracy (greedy `generate()`, val split, {n_val} scenes, reloaded with `from_pretrained`)
| family | accuracy | yes rate | n | by kind |
|---|---|---|---|---|
{rows}

Chance is 0.5 on every family but mcq (0.75 by answering "no" to all 4 options).

{status}

## Reproduce
`{cmd}` (step-bounded: the defaults are this run's settings, so the run is the same step for step)
"""


if __name__ == "__main__":
    main()
