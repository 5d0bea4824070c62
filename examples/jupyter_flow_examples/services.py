"""Four small model services for the examples: text cleaner, intent, slot filling, answer.

They stand in for the HTTP model endpoints a team already runs (one container per model),
so that the example flows run end to end on a laptop. Each is its own HTTP server:

========  ============  =================================================================
service   route         request -> answer
========  ============  =================================================================
cleaner   POST /clean   ``{"raw_text"}`` -> ``{"cleaned_text"}``
intent    POST /predict ``{"text"}`` -> ``{"label", "score", "scores"}``
slots     POST /extract ``{"text", "today"?}`` -> ``{"slots": {...}, "spans": [...]}``
answer    POST /answer  ``{"intent", "slots", "text"?, "language"?}`` -> ``{"answer", ...}``
========  ============  =================================================================

A request without the fields a service needs gets HTTP 422 with ``{"error": "..."}``
saying what is wrong. Every service also answers ``GET /health``. ::

    python -m jupyter_flow_examples.services            # run the intent example once
    python -m jupyter_flow_examples.services --flow notebooks/flows/customer-service.flow.json
    python -m jupyter_flow_examples.services --serve    # keep the services up, print their URLs

`start_demo_services()` starts the four on free loopback ports in background threads and
sets CLEANER_URL, INTENT_URL, SLOTS_URL and ANSWER_URL, which the example flow files read
as `${CLEANER_URL}` and so on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "INTENTS",
    "PRODUCTS",
    "SERVICES",
    "BadRequest",
    "classify_intent",
    "clean_text",
    "compose_answer",
    "extract_slots",
    "start_demo_services",
]

#: Intent -> its keywords. On a tie the intent listed first wins; a greeting counts only
#: when nothing else was asked.
INTENTS: dict[str, tuple[str, ...]] = {
    "cancel": ("cancel", "terminate", "unsubscribe", "close my account", "取消", "终止"),
    "returns": ("return", "exchange", "send it back", "退货", "换货"),
    "shipping": ("where is my order", "delivery", "deliver", "shipping", "shipped", "tracking", "arrive", "物流", "快递",
                 "发货", "到货", "还没收到", "没有收到", "送达"),
    "billing": ("invoice", "bill", "charge", "refund", "payment", "price", "paid", "账单", "退款", "付款", "扣款", "收费"),
    "support": ("error", "broken", "crash", "help", "not working", "bug", "故障", "帮助", "坏了", "无法"),
    "greeting": ("hello", "hi", "good morning", "你好"),
}

#: The demo shop's catalogue: product name -> the words customers use for it (the first
#: Chinese one is the product's Chinese name).
PRODUCTS: dict[str, tuple[str, ...]] = {
    "wireless headphones": ("wireless headphones", "headphones", "headphone", "earbuds", "无线耳机", "蓝牙耳机", "耳机"),
    "laptop": ("laptop", "notebook computer", "笔记本电脑", "笔记本"),
    "smartwatch": ("smartwatch", "smart watch", "智能手表", "手表"),
    "coffee maker": ("coffee maker", "coffee machine", "espresso machine", "咖啡机"),
    "phone case": ("phone case", "手机壳"),
    "keyboard": ("mechanical keyboard", "keyboard", "机械键盘", "键盘"),
    "monitor": ("monitor", "display screen", "显示器"),
}

# ---------------------------------------------------------------------------- models


def clean_text(raw: str) -> str:
    """Unicode-normalize (full-width to half-width), drop control characters and markup,
    collapse whitespace."""
    text = unicodedata.normalize("NFKC", raw)
    text = re.sub(r"<[^>]+>", " ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return re.sub(r"\s+", " ", text).strip()


def classify_intent(text: str) -> dict[str, Any]:
    """Score each intent by how often its keywords occur; scores are shares of the hits.

    English keywords match whole words only ("hi" is not found in "this").
    """
    low = text.lower()
    hits = {label: sum(len(_keyword(k).findall(low)) for k in keys) for label, keys in INTENTS.items()}
    if sum(hits.values()) > hits["greeting"]:
        hits["greeting"] = 0
    total = sum(hits.values())
    if total == 0:
        scores = {label: 0.0 for label in INTENTS} | {"other": 1.0}
    else:
        scores = {label: n / total for label, n in hits.items()} | {"other": 0.0}
    label = max(scores, key=scores.__getitem__)
    return {"label": label, "score": scores[label], "scores": scores}


def _keyword(word: str) -> re.Pattern[str]:
    if word.isascii():
        return re.compile(rf"(?<![a-z]){re.escape(word)}(?:s|es|d|ed|ing)?(?![a-z])")
    return re.compile(re.escape(word))


_CURRENCIES = {
    "$": "USD", "us$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "美元": "USD",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "欧元": "EUR",
    "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "英镑": "GBP",
    "¥": "CNY", "rmb": "CNY", "cny": "CNY", "yuan": "CNY", "人民币": "CNY", "元": "CNY", "块": "CNY", "块钱": "CNY",
}
_NUMBER = r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
     "december"])}
_MONTH = r"(?P<month>" + "|".join(sorted({m for name in _MONTHS for m in (name, name[:3])} | {"sept"}, key=len,
                                         reverse=True)) + r")\.?"
_RELATIVE = {"today": 0, "yesterday": -1, "tomorrow": 1, "今天": 0, "昨天": -1, "明天": 1, "前天": -2, "后天": 2}
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("order_number", re.compile(
        r"(?:\border(?:\s+(?:number|no\.?|num|id))?|订单(?:号|编号)?)\s*(?:is|was|是|为)?\s*[:#：]?\s*#?\s*"
        r"(?P<id>(?=[A-Za-z0-9-]*[0-9])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)", re.I)),
    ("order_number", re.compile(r"(?<![\w#])#(?P<id>[0-9]{4,}(?:-[0-9]+)*)\b")),
    ("amount", re.compile(r"(?P<cur>US\$|\$|€|£|¥|RMB|CNY|USD|EUR|GBP|人民币)\s?" + _NUMBER + r"(?:\s?(?:元|块钱|块))?", re.I)),
    ("amount", re.compile(_NUMBER + r"\s?(?P<cur>USD|EUR|GBP|CNY|RMB|dollars?|euros?|pounds?|yuan|美元|欧元|英镑|块钱|元|块)"
                          r"(?![A-Za-z])", re.I)),
    ("date", re.compile(r"\b(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})\b")),
    ("date", re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})\b")),
    ("date", re.compile(r"(?:(?P<y>\d{4})\s?年\s?)?(?P<m>\d{1,2})\s?月\s?(?P<d>\d{1,2})\s?[日号]")),
    ("date", re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?\s+" + _MONTH + r"(?:,?\s+(?P<y>\d{4}))?\b", re.I)),
    ("date", re.compile(r"\b" + _MONTH + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<y>\d{4}))?\b", re.I)),
    ("date", re.compile(r"\b(?P<rel>today|yesterday|tomorrow)\b|(?P<relzh>今天|昨天|明天|前天|后天)", re.I)),
]
_PRODUCT = re.compile("|".join(
    rf"(?<![a-z]){re.escape(alias)}(?:s|es)?(?![a-z])" if alias.isascii() else re.escape(alias)
    for alias in sorted((a for aliases in PRODUCTS.values() for a in aliases), key=len, reverse=True)), re.I)
_ALIASES = {alias.lower(): name for name, aliases in PRODUCTS.items() for alias in aliases}


def extract_slots(text: str, today: dt.date | None = None) -> dict[str, Any]:
    """Find order numbers, amounts with their currency, dates, products and e-mail addresses.

    Rules and regular expressions, English and Chinese. A span claimed by one slot is not
    read again by a later one (an e-mail's digits are not an order number). Dates are
    given as ISO dates; a date without a year, or "yesterday"/"昨天", is read relative to
    `today`. Returns ``{"slots": {...}, "spans": [{slot, text, start, end}, ...]}``.
    """
    today = today or dt.date.today()
    taken: list[tuple[int, int]] = []
    spans: list[dict[str, Any]] = []
    slots: dict[str, list[Any]] = {"order_numbers": [], "amounts": [], "dates": [], "products": [], "emails": []}
    found = [(kind, m) for kind, pattern in _PATTERNS for m in pattern.finditer(text)]
    found += [("product", m) for m in _PRODUCT.finditer(text)]
    for kind, m in found:
        if any(m.start() < end and start < m.end() for start, end in taken):
            continue
        value = _slot_value(kind, m, today)
        if value is None:
            continue
        taken.append(m.span())
        spans.append({"slot": kind, "text": m.group(0), "start": m.start(), "end": m.end()})
        key = {"order_number": "order_numbers", "amount": "amounts", "date": "dates", "product": "products",
               "email": "emails"}[kind]
        if value not in slots[key]:
            slots[key].append(value)
    spans.sort(key=lambda s: s["start"])
    return {"slots": slots, "spans": spans}


def _slot_value(kind: str, m: re.Match[str], today: dt.date) -> Any:
    if kind == "email":
        return m.group(0).lower()
    if kind == "order_number":
        return m.group("id").upper()
    if kind == "product":
        word = m.group(0).lower()
        return _ALIASES.get(word) or _ALIASES.get(re.sub(r"(?:es|s)$", "", word)) or _ALIASES.get(word[:-1])
    if kind == "amount":
        currency = _CURRENCIES.get(m.group("cur").lower())
        return {"value": float(m.group("num").replace(",", "")), "currency": currency, "text": m.group(0).strip()}
    groups = m.groupdict()
    if groups.get("rel") or groups.get("relzh"):
        day = today + dt.timedelta(days=_RELATIVE[(groups.get("rel") or groups["relzh"]).lower()])
    else:
        month = groups["m"] if groups.get("m") else _MONTHS[_full_month(groups["month"])]
        try:
            day = dt.date(int(groups["y"]) if groups.get("y") else today.year, int(month), int(groups["d"]))
        except ValueError:  # 31 February is not a date
            return None
    return {"date": day.isoformat(), "text": m.group(0).strip()}


def _full_month(word: str) -> str:
    word = word.lower().rstrip(".")
    return next(name for name in _MONTHS if name.startswith(word[:3]))


_REPLIES: dict[str, dict[str, tuple[str, str]]] = {
    # intent -> language -> (reply with an order number, reply without one)
    "billing": {
        "en": ("I'm sorry about the charge{amount} on order {order}. I have opened a billing review{product}; "
               "you will hear from us{email} within 2 business days.",
               "I'm sorry about the charge{amount}. Could you send me your order number so I can check your invoice?"),
        "zh": ("很抱歉给您带来不便。我们已为订单{order}{product}{amount}提交账单核查，两个工作日内{email}回复您。",
               "很抱歉给您带来不便{amount}。请提供您的订单号，以便我们核对账单。"),
    },
    "shipping": {
        "en": ("Thanks for waiting. I have asked the warehouse for the tracking status of order {order}{details}; "
               "we will update you{email} today.",
               "I can check where your parcel is{product}. What is your order number?"),
        "zh": ("感谢您的耐心等待。我们已向仓库查询订单{order}{details}的物流状态，今天内{email}回复您。",
               "我们可以帮您查询物流{product}。请问您的订单号是多少？"),
    },
    "returns": {
        "en": ("You can return the {product_or_items} from order {order} within 30 days. I have sent a return label{email}.",
               "You can return the {product_or_items} within 30 days. Please send me your order number for a return label."),
        "zh": ("订单{order}中的{product_or_items}可在30天内退货，退货标签已{email}发送给您。",
               "{product_or_items}可在30天内退货。请提供订单号，以便我们为您生成退货标签。"),
    },
    "cancel": {
        "en": ("I have asked to cancel order {order}{product}. You will get a confirmation{email} once it is done.",
               "I can help you cancel. Which order (order number) or account should be cancelled?"),
        "zh": ("我们已提交取消订单{order}{product}的申请，完成后将{email}通知您。",
               "我们可以帮您办理取消。请提供需要取消的订单号或账户。"),
    },
    "support": {
        "en": ("Sorry that your {product_or_items} from order {order} is not working. A technician will contact you{email} "
               "within one business day.",
               "Sorry that your {product_or_items} is not working. Could you tell me the order number and what happens?"),
        "zh": ("很抱歉您订单{order}中的{product_or_items}出现故障，技术人员将在一个工作日内{email}联系您。",
               "很抱歉{product_or_items}出现故障。请提供订单号并描述问题。"),
    },
    "greeting": {
        "en": ("Hello! I see order {order}. How can I help you with it?", "Hello! How can I help you today?"),
        "zh": ("您好！我们看到了订单{order}，请问有什么可以帮您？", "您好！请问有什么可以帮您？"),
    },
    "other": {
        "en": ("Thanks for your message about order {order}. A member of our team will get back to you{email}.",
               "Thanks for your message. A member of our team will get back to you{email}."),
        "zh": ("感谢您关于订单{order}的留言，我们的客服人员会尽快{email}回复您。",
               "感谢您的留言，我们的客服人员会尽快{email}回复您。"),
    },
}
SLOT_KEYS = ("order_numbers", "amounts", "dates", "products", "emails")


def compose_answer(intent: str, slots: dict[str, Any], text: str = "", language: str | None = None) -> dict[str, Any]:
    """A reply to the customer from the intent and the slots, in the message's language.

    When the intent needs an order number and none was found, the reply asks for it.
    Returns ``{"answer", "intent", "language", "used_slots", "needs"}``.
    """
    language = language or ("zh" if re.search(r"[\u4e00-\u9fff]", text) else "en")
    templates = _REPLIES.get(intent, _REPLIES["other"])[language]
    zh = language == "zh"
    orders, amounts, dates = slots.get("order_numbers", []), slots.get("amounts", []), slots.get("dates", [])
    products, emails = slots.get("products", []), slots.get("emails", [])
    names = [_zh_name(p) for p in products] if zh else list(products)
    joiner = "、" if zh else " and "
    details = names + [f"{'日期' if zh else 'date mentioned:'} {d['date']}" for d in dates[:1]]
    parts = {
        "order": joiner.join(orders),
        "amount": "" if not amounts else (f"（{_money(amounts[0], zh)}）" if zh else f" of {_money(amounts[0], zh)}"),
        "product": "" if not names else (f"的{joiner.join(names)}" if zh else f" ({joiner.join(names)})"),
        "product_or_items": joiner.join(names) or ("商品" if zh else "items"),
        "details": "" if not details else (f"（{'，'.join(details)}）" if zh else f" ({', '.join(details)})"),
        "email": "" if not emails else (f"通过{emails[0]}" if zh else f" at {emails[0]}"),
    }
    template = templates[0] if orders else templates[1]
    markers = {"order_numbers": ("{order}",), "amounts": ("{amount}",), "dates": ("{details}",),
               "products": ("{product", "{details}"), "emails": ("{email}",)}
    used = sorted(key for key, marks in markers.items() if slots.get(key) and any(m in template for m in marks))
    needs = ["order_number"] if not orders and intent not in ("greeting", "other") else []
    return {"answer": template.format(**parts), "intent": intent, "language": language, "used_slots": used,
            "needs": needs}


def _money(amount: dict[str, Any], zh: bool) -> str:
    if zh and amount.get("currency") == "CNY":
        return f"{amount['value']:,.2f}元"
    return f"{amount['value']:,.2f} {amount.get('currency') or ''}".strip()


def _zh_name(product: str) -> str:
    return next((alias for alias in PRODUCTS.get(product, ()) if not alias.isascii()), product)


# ---------------------------------------------------------------------------- HTTP


class BadRequest(ValueError):
    """A request a service cannot answer; sent back as HTTP 422 with the message."""


def _text_field(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    if name not in data or data[name] is None:
        if required:
            raise BadRequest(f"missing field {name!r}: send a JSON object like {{\"{name}\": \"...\"}}")
        return ""
    if not isinstance(data[name], str):
        raise BadRequest(f"field {name!r} must be a string, not {type(data[name]).__name__}")
    return data[name]


def _extract(data: dict[str, Any]) -> dict[str, Any]:
    text = _text_field(data, "text")
    today = _text_field(data, "today", required=False)
    try:
        day = dt.date.fromisoformat(today) if today else None
    except ValueError:
        raise BadRequest(f"field 'today' must be an ISO date like 2024-03-05, not {today!r}") from None
    return extract_slots(text, day)


def _answer(data: dict[str, Any]) -> dict[str, Any]:
    intent = data.get("intent")
    if isinstance(intent, dict):  # the intent service's whole answer
        intent = intent.get("label")
    if not isinstance(intent, str) or not intent:
        raise BadRequest("field 'intent' must be an intent label such as \"billing\" (or the intent service's answer)")
    slots = data.get("slots", {})
    if not isinstance(slots, dict):
        raise BadRequest(f"field 'slots' must be an object like the slot service's 'slots', not {type(slots).__name__}")
    for key in SLOT_KEYS:
        if not isinstance(slots.get(key, []), list):
            raise BadRequest(f"field 'slots.{key}' must be a list, not {type(slots[key]).__name__}")
    for i, amount in enumerate(slots.get("amounts", [])):
        if not isinstance(amount, dict) or not isinstance(amount.get("value"), (int, float)):
            raise BadRequest(f"field 'slots.amounts[{i}]' must be an object with a numeric 'value'")
    for i, date in enumerate(slots.get("dates", [])):
        if not isinstance(date, dict) or not isinstance(date.get("date"), str):
            raise BadRequest(f"field 'slots.dates[{i}]' must be an object with a 'date'")
    language = _text_field(data, "language", required=False) or None
    if language not in (None, "en", "zh"):
        raise BadRequest(f"field 'language' must be 'en' or 'zh', not {language!r}")
    return compose_answer(intent, slots, _text_field(data, "text", required=False), language)


Handler = Callable[[dict[str, Any]], dict[str, Any]]

#: Each service: environment variable for its URL -> (name, route, handler).
SERVICES: dict[str, tuple[str, str, Handler]] = {
    "CLEANER_URL": ("cleaner", "/clean", lambda d: {"cleaned_text": clean_text(_text_field(d, "raw_text"))}),
    "INTENT_URL": ("intent", "/predict", lambda d: classify_intent(_text_field(d, "text"))),
    "SLOTS_URL": ("slots", "/extract", _extract),
    "ANSWER_URL": ("answer", "/answer", _answer),
}


def service_app(route: str, handler: Handler) -> Any:
    """A Starlette app serving `handler` at POST `route` (and GET /health)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"the request body is not JSON ({exc})"}, status_code=422)
        if not isinstance(data, dict):
            return JSONResponse({"error": f"send a JSON object, not {type(data).__name__}"}, status_code=422)
        try:
            return JSONResponse(handler(data))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "route": route})

    routes: list[Route] = [Route(route, endpoint, methods=["POST"]), Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes)


@contextmanager
def _serving(name: str, app: Any, host: str) -> Iterator[str]:
    """One uvicorn server on a free port of `host` in a thread, while the block runs."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"jupyter-flow-demo-{name}",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the {name} demo service did not start on {host}:{port}")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def start_demo_services(host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """Run the four services, each its own server on its own port, while the block runs.

    Yields their base URLs by environment variable (CLEANER_URL, INTENT_URL, SLOTS_URL,
    ANSWER_URL) and sets those variables for the block, restoring them afterwards.
    """
    with ExitStack() as stack:
        urls = {var: stack.enter_context(_serving(name, service_app(route, handler), host))
                for var, (name, route, handler) in SERVICES.items()}
        previous = {k: os.environ.get(k) for k in urls}
        os.environ.update(urls)
        try:
            yield urls
        finally:
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    from jupyter_flow.cli import main as cli

    flows = Path(__file__).resolve().parents[2] / "notebooks" / "flows"
    parser = argparse.ArgumentParser(prog="python -m jupyter_flow_examples.services", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep the services running until Ctrl-C")
    parser.add_argument("--flow", default=str(flows / "intent.flow.yaml"),
                        help="flow to run once against the services (default: notebooks/flows/intent.flow.yaml)")
    parser.add_argument("--text", default="Hello!  I was <b>charged twice</b> on my last invoice, please refund.",
                        help="the user_input of that run")
    args = parser.parse_args(argv)
    with start_demo_services() as urls:
        if args.serve:
            print(json.dumps(urls), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        print(f"running {args.flow} against the demo services at {', '.join(urls.values())}", file=sys.stderr)
        return cli(["run", args.flow, "--input", f"user_input={args.text}"])


if __name__ == "__main__":
    sys.exit(main())
