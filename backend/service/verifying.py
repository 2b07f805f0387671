"""The verifiers a comparison or a sweep needs, held while it runs, and attached to its controllers.

A verifier-guided controller names its verifier (``beam4x4:l1_exact@tiny-prm``): ``oracle`` (the
arith rule checker, no engine), a registered process reward model (a model folder with a
``prm_config.json``), whose engine (vLLM's pooling runner) is leased like any model's for the
whole run, next to the policy's, or a PRM served elsewhere (``[verifiers.NAME]`` of the
endpoints file: its ``/pooling``, nothing leased). The names are made whole first (`canonical_controllers`: the
``search_verifier`` setting fills in a missing ``@VERIFIER``), so what is stored says which
verifier chose the answer.

    names = canonical_controllers(["beam4x4", "l1_exact"], config)   # ('beam4x4:l1_exact@tiny-prm', 'l1_exact')
    async with held_verifiers(service, names, "viewer") as verifiers:
        controller = with_verifier(make_controller(names[0], config), verifiers)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from backend.controllers.config import ControllerConfig
from backend.controllers.prompts import chat_messages
from backend.controllers.registry import make_controller, verifier_name
from backend.errors import InputError
from backend.evaluation.oracle import label_steps
from backend.evaluation.arith import is_arith_question
from backend.evaluation.verifiers import ORACLE, OracleVerifier, PRMVerifier
from backend.serving.client import EngineClient
from backend.serving.engine import Endpoint
from backend.serving.local import SCORE
from backend.serving.registry import PRM_CONFIG


def canonical_controllers(names: Iterable[str], config: ControllerConfig) -> tuple[str, ...]:
    """Each controller's full name: a verifier-guided one with its verifier (the setting's when not named)."""
    return tuple(dict.fromkeys(make_controller(name, config).name for name in names))


def verifiers_needed(names: Iterable[str], config: ControllerConfig) -> list[str]:
    return sorted({v for v in (verifier_name(name, config) for name in names) if v})


async def check_verifiers(service, names: Iterable[str]) -> None:
    """InputError for a named verifier that is neither the oracle, a registered PRM nor one of the endpoints file (before anything runs)."""
    for name in verifiers_needed(names, service.controller_config):
        if name != ORACLE and name not in service.remote_verifiers:
            await _prm_spec(service, name)


async def _prm_spec(service, name: str):
    try:
        spec = service.resolve_model(name)
    except Exception as exc:  # UnknownModelError and kin: said as an input error
        raise InputError(f"verifier {name!r}: {exc}; choose {ORACLE} or one of: {', '.join(service.verifier_names()[1:]) or 'none registered'}") from None
    if not spec.is_verifier:
        raise InputError(f"verifier {name!r}: it is not a process reward model (its folder has no {PRM_CONFIG}); "
                         f"choose {ORACLE} or one of: {', '.join(service.verifier_names()[1:]) or 'none registered'}")
    return spec


@contextlib.asynccontextmanager
async def held_verifiers(service, names: Iterable[str], holder: str) -> AsyncIterator[dict[str, object]]:
    """Every verifier the controllers `names` need, by name; each PRM's engine leased to `holder` (viewer,
    sweep, request: as the policy's) until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        verifiers: dict[str, object] = {}
        for name in verifiers_needed(names, service.controller_config):
            if name == ORACLE:
                verifiers[name] = OracleVerifier()
                continue
            if name in service.remote_verifiers:  # served elsewhere: nothing to lease
                remote = service.remote_verifiers[name]
                endpoint, tag = Endpoint(remote.base_url, service.verifier_keys.get(name, ""), remote.model), remote.step_tag_id
            else:
                spec = await _prm_spec(service, name)
                endpoint, tag = await stack.enter_async_context(service.hold(spec, holder, role=SCORE)), _step_tag_id(spec)
            client = EngineClient(endpoint, timeout_s=service.request_timeout_s)
            stack.push_async_callback(client.aclose)
            verifiers[name] = PRMVerifier(name, client, tag, _prompt_ids(client))
        yield verifiers


def with_verifier(controller, verifiers: dict[str, object]):
    """`controller` with its verifier attached (if it uses one)."""
    name = getattr(controller, "verifier_name", None)
    if name:
        if name not in verifiers:
            raise InputError(f"{controller.name}: its verifier {name!r} is not held for this run")
        controller.verifier = verifiers[name]
    return controller


def _step_tag_id(spec) -> int:
    return int(json.loads((Path(spec.source) / PRM_CONFIG).read_text())["step_tag_id"])


def _prompt_ids(client: EngineClient):
    """The question's chat prompt on the PRM's engine, as the PRM was trained on it (cached per question)."""
    cache: dict[str, list[int]] = {}

    async def prompt_ids(question: str) -> list[int]:
        if question not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[question] = await client.chat_prompt_ids(chat_messages(question))
        return cache[question]

    return prompt_ids


def label_tree(question: str, nodes: list[dict]) -> None:
    """The oracle's verdict on each node of a search tree (or a scored sample's chain), where the question is arith:
    each node labelled as the last step of its path from the root."""
    if not nodes or not is_arith_question(question):
        return
    children = {node["parent"] for node in nodes}
    for leaf in (node for node in nodes if node["id"] not in children):
        path, at = [], leaf
        while at is not None:
            path.append(at)
            at = nodes[at["parent"]] if at["parent"] is not None else None
        path.reverse()
        for node, good in zip(path, label_steps(question, [n["text"] for n in path])):
            node["oracle"] = good
