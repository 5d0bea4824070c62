"""The example model services over real HTTP: each of the four on its own port, the
customer-service flow through the CLI against them, and the intent example's one-liner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_flow_examples.services import SERVICES, start_demo_services

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "notebooks" / "flows" / "customer-service.flow.json"


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    with start_demo_services() as urls:
        yield urls


def post(url: str, body: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
    return httpx.post(url, json=body, timeout=10)


def test_each_service_is_its_own_server_and_the_urls_are_set_only_while_they_run() -> None:
    before = {var: os.environ.get(var) for var in SERVICES}
    with start_demo_services() as urls:
        assert set(urls) == {"CLEANER_URL", "INTENT_URL", "SLOTS_URL", "ANSWER_URL"}
        assert len(set(urls.values())) == 4  # four ports
        for var, url in urls.items():
            assert os.environ[var] == url
            assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
        # a service answers its own route only: the cleaner is not the intent model
        assert httpx.post(f"{urls['CLEANER_URL']}/predict", json={"text": "hi"}, timeout=5).status_code == 404
    assert {var: os.environ.get(var) for var in SERVICES} == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{urls['SLOTS_URL']}/health", timeout=2)


def test_the_cleaner_normalizes_width_drops_markup_and_control_characters(services: dict[str, str]) -> None:
    answer = post(f"{services['CLEANER_URL']}/clean", {"raw_text": "  Hello <b>there</b>\x07,\n\n订单号：ＡＢ１２３  "}).json()
    assert answer == {"cleaned_text": "Hello there , 订单号:AB123"}


@pytest.mark.parametrize(("text", "label"), [
    ("I was charged twice on my invoice", "billing"),
    ("Hi! Where is my order? It has not arrived", "shipping"),  # a greeting does not outweigh a question
    ("please cancel my subscription and refund me", "cancel"),  # a tie goes to the intent listed first
    ("I want to return these shoes", "returns"),
    ("the app keeps crashing with an error", "support"),
    ("你好", "greeting"),
    ("我的快递还没收到", "shipping"),
    ("请帮我取消订单", "cancel"),
    ("this is fine", "other"),  # "hi" inside "this" is not a greeting
])
def test_the_intent_model_labels_english_and_chinese_messages(services: dict[str, str], text: str, label: str) -> None:
    answer = post(f"{services['INTENT_URL']}/predict", {"text": text}).json()
    assert answer["label"] == label
    assert answer["scores"][label] == answer["score"] > 0
    assert sum(answer["scores"].values()) == pytest.approx(1.0)


SLOT_CASES = [
    ("I was charged $25.99 twice for order #A1234-5678 on March 3, write to Jane.Doe@Example.com",
     {"order_numbers": ["A1234-5678"], "amounts": [(25.99, "USD")], "dates": ["2024-03-03"], "products": [],
      "emails": ["jane.doe@example.com"]}),
    ("Where is my order 884512? The wireless headphones should have arrived yesterday.",
     {"order_numbers": ["884512"], "amounts": [], "dates": ["2024-03-09"], "products": ["wireless headphones"],
      "emails": []}),
    ("Return 2 keyboards from order no. ORD-2024-0042 (paid 1,299.00 EUR on 2024-02-28); see #99881",
     {"order_numbers": ["ORD-2024-0042", "99881"], "amounts": [(1299.0, "EUR")], "dates": ["2024-02-28"],
      "products": ["keyboard"], "emails": []}),
    ("Order 55512 placed on the 5th of April 2024 for a coffee machine, £40 and 12 dollars",
     {"order_numbers": ["55512"], "amounts": [(40.0, "GBP"), (12.0, "USD")], "dates": ["2024-04-05"],
      "products": ["coffee maker"], "emails": []}),
    ("你好，我的订单号是20240315-889，智能手表还没收到，3月5日付款了人民币1299元",
     {"order_numbers": ["20240315-889"], "amounts": [(1299.0, "CNY")], "dates": ["2024-03-05"],
      "products": ["smartwatch"], "emails": []}),
    ("订单编号：A77881 的蓝牙耳机和笔记本电脑坏了，2023年12月1日买的，退款¥199，邮箱 li.wei@example.cn，明天联系我",
     {"order_numbers": ["A77881"], "amounts": [(199.0, "CNY")], "dates": ["2023-12-01", "2024-03-11"],
      "products": ["wireless headphones", "laptop"], "emails": ["li.wei@example.cn"]}),
    # nothing to find: no digits after "order", no currency, a day that does not exist
    ("My order was late, I paid 30 and it was due on 31 February", {"order_numbers": [], "amounts": [], "dates": [],
                                                                    "products": [], "emails": []}),
]


@pytest.mark.parametrize(("text", "expected"), SLOT_CASES)
def test_slot_filling_finds_orders_amounts_dates_products_and_emails(
        services: dict[str, str], text: str, expected: dict[str, list[Any]]) -> None:
    answer = post(f"{services['SLOTS_URL']}/extract", {"text": text, "today": "2024-03-10"}).json()
    slots = answer["slots"]
    assert slots["order_numbers"] == expected["order_numbers"]
    assert [(a["value"], a["currency"]) for a in slots["amounts"]] == expected["amounts"]
    assert [d["date"] for d in slots["dates"]] == expected["dates"]
    assert slots["products"] == expected["products"]
    assert slots["emails"] == expected["emails"]
    for span in answer["spans"]:  # every span points at the text it came from
        assert text[span["start"]:span["end"]] == span["text"]


def test_slot_filling_reads_relative_dates_from_today_when_none_is_given(services: dict[str, str]) -> None:
    import datetime as dt

    slots = post(f"{services['SLOTS_URL']}/extract", {"text": "it was due today"}).json()["slots"]
    assert [d["date"] for d in slots["dates"]] == [dt.date.today().isoformat()]


@pytest.mark.parametrize(("body", "wanted"), [
    ({"intent": "billing", "slots": {"order_numbers": ["A1"], "amounts": [{"value": 25.99, "currency": "USD"}],
                                     "emails": ["a@b.io"]}},
     ["A1", "25.99 USD", "a@b.io", "billing review"]),
    ({"intent": "billing", "slots": {}}, ["order number"]),  # asks for what is missing
    ({"intent": {"label": "shipping"}, "slots": {"order_numbers": ["884512"], "products": ["laptop"],
                                                  "dates": [{"date": "2024-03-09"}]}},
     ["884512", "laptop", "2024-03-09", "tracking"]),
    ({"intent": "returns", "slots": {"order_numbers": ["A77881"], "products": ["coffee maker"]}, "text": "我要退货"},
     ["A77881", "咖啡机", "退货"]),
    ({"intent": "billing", "slots": {"amounts": [{"value": 199, "currency": "CNY"}]}, "language": "zh"},
     ["199.00元", "订单号"]),
    ({"intent": "greeting", "slots": {}, "text": "你好"}, ["您好"]),
])
def test_the_answer_service_composes_a_reply_from_intent_and_slots(
        services: dict[str, str], body: dict[str, Any], wanted: list[str]) -> None:
    answer = post(f"{services['ANSWER_URL']}/answer", body).json()
    for word in wanted:
        assert word in answer["answer"]
    chinese = body.get("language") == "zh" or any("\u4e00" <= ch <= "\u9fff" for ch in body.get("text", ""))
    assert answer["language"] == ("zh" if chinese else "en")
    assert answer["needs"] == ([] if body["slots"].get("order_numbers") or answer["intent"] == "greeting"
                               else ["order_number"])


@pytest.mark.parametrize(("service", "route", "body", "message"), [
    ("CLEANER_URL", "/clean", {"text": "wrong field"}, "missing field 'raw_text'"),
    ("CLEANER_URL", "/clean", {"raw_text": 42}, "field 'raw_text' must be a string, not int"),
    ("INTENT_URL", "/predict", b"{not json", "the request body is not JSON"),
    ("INTENT_URL", "/predict", ["a", "list"], "send a JSON object, not list"),
    ("SLOTS_URL", "/extract", {}, "missing field 'text'"),
    ("SLOTS_URL", "/extract", {"text": "x", "today": "yesterday"}, "field 'today' must be an ISO date"),
    ("ANSWER_URL", "/answer", {"slots": {}}, "field 'intent' must be an intent label"),
    ("ANSWER_URL", "/answer", {"intent": "billing", "slots": ["A1"]}, "field 'slots' must be an object"),
    ("ANSWER_URL", "/answer", {"intent": "billing", "slots": {"order_numbers": "A1"}},
     "field 'slots.order_numbers' must be a list"),
    ("ANSWER_URL", "/answer", {"intent": "billing", "slots": {"amounts": [{"value": "ten"}]}},
     "field 'slots.amounts[0]' must be an object with a numeric 'value'"),
    ("ANSWER_URL", "/answer", {"intent": "billing", "slots": {}, "language": "fr"}, "field 'language' must be 'en' or 'zh'"),
])
def test_bad_requests_get_422_with_a_message_that_says_what_is_wrong(
        services: dict[str, str], service: str, route: str, body: Any, message: str) -> None:
    response = post(services[service] + route, body)
    assert response.status_code == 422
    assert message in response.json()["error"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_the_customer_service_flow_runs_through_the_cli_against_the_services(
        services: dict[str, str], tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    proc = cli("run", str(FLOW), "--input", "user_input=Hi, where is my order ＃884512? The <i>headphones</i> never arrived.",
               "--trace", str(trace), env=services)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["intent"]["label"] == "shipping"
    assert out["slots"]["slots"]["order_numbers"] == ["884512"]
    assert "884512" in out["answer"]["answer"] and "wireless headphones" in out["answer"]["answer"]
    # intent and slot filling both wait for the cleaner only; the answer waits for both
    nodes = {n["node"]: n for n in json.loads(trace.read_text())["nodes"]}
    assert all(nodes[n]["status"] == "ok" for n in ("cleaner", "intent", "slots", "answer"))
    assert nodes["answer"]["inputs"]["input_mapping"]["slots"]["order_numbers"] == ["884512"]

    proc = cli("run", str(FLOW), "--input", "user_input=我的订单号是A77881，咖啡机坏了，我要退货", env=services)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)["answer"]
    assert answer["language"] == "zh" and "A77881" in answer["answer"] and "咖啡机" in answer["answer"]


def test_the_customer_service_flow_says_which_node_failed_when_a_service_is_down(services: dict[str, str]) -> None:
    with start_demo_services() as other:
        stopped = other["SLOTS_URL"]
    proc = cli("run", str(FLOW), "--input", "user_input=order 123", env={**services, "SLOTS_URL": stopped})
    assert proc.returncode == 1
    assert "slots" in proc.stderr and "cannot connect" in proc.stderr and "Traceback" not in proc.stderr


def test_the_intent_example_one_liner_still_runs_end_to_end() -> None:
    proc = subprocess.run([sys.executable, "-m", "jupyter_flow_examples.services"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["intent"]["label"] == "billing"
    assert "charged twice" in out["billing_reply"]["text"]
