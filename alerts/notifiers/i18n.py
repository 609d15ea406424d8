"""The words of an alert message in each channel language (``language: en | zh``).

``phrases(language)`` gives the wording every notifier shares (``render`` and the
notifiers' own labels): ``English`` is the text alerts always had; ``Chinese`` says the
same in Simplified Chinese, for PR teams that read their alerts on Feishu/Lark, DingTalk
and WeCom. Every method returns raw text: the notifier escapes what came from outside
(titles, names) for its markup, as before.

Chinese wording (one choice, used everywhere):

* tiers: 一级 / 二级 / 三级 ("Tier 1..3"); tier names 轻微投诉 / 局部扩散 / 全网危机
  (minor complaint / local spread / network-wide crisis): the headline "三级 #12：Acme：
  全网危机"; drills start with 【演练】;
* follow-ups: 已由 alice 确认 / 已由 bob 解决; reasons (``Reason``): 新事件, 升级为三级
  （原为一级）, 升级通知第 2 级：15 分钟 内无人确认, ... (``zh_reason``);
* the explanation is rendered from the incident's heat (``AlertMessage.heat``, see
  ``zh_explanation``); an alert without it (queued before heat was kept) shows the
  detector's English explanation;
* counts: under 10 000 as digits (9500), then 万 and 亿 with one decimal below 100 of the
  unit (1.2万, 12.3万, 120万, 3.5亿: ``zh_count``); durations 12 分钟 / 2.5 小时.

Titles and reasons are recognised, never parsed: a title is localised only when it ends
with our own English tier name (``incidents.incident_title``); a reason only through its
structured ``Reason``. Anything else is shown as it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from alerts.notifiers.base import AlertHeat, AlertMessage, DigestItem
from alerts.notifiers.reasons import Reason

Language = Literal["en", "zh"]

TIER_NAMES = {1: "minor complaint", 2: "local spread", 3: "network-wide crisis"}
"""The English tier names of incident titles ("Acme: network-wide crisis")."""
ZH_TIER_LEVELS = {1: "一级", 2: "二级", 3: "三级"}
ZH_TIER_NAMES = {1: "轻微投诉", 2: "局部扩散", 3: "全网危机"}
OPEN_INCIDENT = "Open incident"
"""The label of the incident link ``messages.build_message`` stores."""
DRILL_TITLE = "[DRILL] "
"""How a digest item of a drill merged with real alerts starts (``messages.digest_message``)."""
Thing = Literal["post", "incident"]


class English:
    """The wording alerts always had."""

    language: Language = "en"
    drill = "[DRILL] "
    ack = "Acknowledge"
    resolve = "Resolve"
    open = "open"
    watch = "Watch"
    teams = "Teams"
    on_call = "On call"
    incident = "Incident"
    unknown = "unknown"
    colon = ": "

    def tier(self, tier: int) -> str:
        return f"Tier {tier}"

    def title(self, title: str) -> str:
        return title

    def subject(self, tier: int, incident_id: int, title: str) -> str:
        """``title`` already escaped."""
        return f"{self.tier(tier)} #{incident_id}{self.colon}{title}"

    def digest_headline(self, count: int, worst: int, title: str) -> str:
        return f"{count} incidents (up to tier {worst}): {title}"

    def followed(self, action: str, actor: str | None) -> str:
        """The start of a follow-up's headline: "Acknowledged by alice"."""
        verb = "Acknowledged" if action == "acknowledge" else "Resolved"
        return f"{verb} by {actor}" if actor else verb

    def follow_up_status(self, action: str, actor: str | None) -> str:
        verb = "acknowledged" if action == "acknowledge" else "resolved"
        return f"{verb} by {actor or 'someone'}"

    def paren(self, text: str) -> str:
        return f" ({text})"

    def reason(self, alert: AlertMessage) -> str:
        return alert.reason

    def item_reason(self, item: DigestItem) -> str:
        return item.reason

    def explanation(self, alert: AlertMessage) -> str:
        return alert.explanation

    def link_label(self, label: str) -> str:
        return label

    def followers(self, count: int | None) -> str:
        return f" ({count:,} followers)" if count is not None else ""

    def post_label(self, host: str | None) -> str:
        return f"view post on {host}" if host else "view post"

    def more(self, count: int, what: Thing) -> str:
        return f"…and {count} more {what}{'' if count == 1 else 's'}"

    def count(self, n: float) -> str:
        return f"{n:,.0f}"

    # -- the ack link's pages (``api/routers/ack.py``); plain text, the page escapes it --

    html_lang = "en"
    ack_off_title = "Ack links are off"
    ack_off = "This server does not issue ack links."
    ack_forged_title = "Invalid link"
    ack_forged = "This acknowledge link is not valid. Use the link from the alert."
    ack_expired_title = "Link expired"
    ack_expired = "This acknowledge link has expired. Acknowledge in the API."
    ack_used_title = "Link already used"
    ack_used = "This acknowledge link has already been used."
    ack_not_found_title = "Incident not found"
    ack_nothing_title = "Nothing to acknowledge"

    def ack_not_found(self, incident_id: int) -> str:
        return f"Incident {incident_id} no longer exists."

    def ack_confirm_title(self, incident_id: int) -> str:
        return f"Acknowledge incident #{incident_id}?"

    def ack_summary(self, drill: bool, tier: int, title: str) -> str:
        return f"{self.drill if drill else ''}{self.tier(tier)}{self.colon}{self.title(title)}"

    def ack_status(self, status: str) -> str:
        return f"Status: {status}."

    def ack_as(self, recipient: str) -> str:
        return f"You will acknowledge it as {recipient}; escalation stops."

    def ack_done_title(self, incident_id: int) -> str:
        return f"Incident #{incident_id} acknowledged"

    def ack_done(self, actor: str | None) -> str:
        return f"Acknowledged by {actor}. Escalation has stopped."

    def ack_link_actor(self, actor: str, recipient: str, channel: str) -> str:
        """Who acknowledged through an ack link: ``actor`` is what was stored
        (``acklinks.actor``: "<recipient> (via <channel> link)"), shown as it is."""
        return actor

    def ack_merged(self, incident_id: int, kept_id: int) -> str:
        return (
            f"Incident {incident_id} was merged into incident {kept_id}; "
            "acknowledge that one in the API."
        )

    def ack_finished(self, incident_id: int, status: str) -> str:
        return f"Incident {incident_id} is {status}; there is nothing to acknowledge."


class Chinese(English):
    """Simplified Chinese (``language: zh``)."""

    language: Language = "zh"
    drill = "【演练】"
    ack = "确认"
    resolve = "解决"
    open = "打开"
    watch = "监测项"
    teams = "团队"
    on_call = "值班"
    incident = "事件"
    unknown = "未知作者"
    colon = "："

    def tier(self, tier: int) -> str:
        return ZH_TIER_LEVELS.get(tier, f"{tier} 级")

    def title(self, title: str) -> str:
        return zh_title(title)

    def digest_headline(self, count: int, worst: int, title: str) -> str:
        return f"合并通知：{count} 起事件（最高{self.tier(worst)}）"

    def followed(self, action: str, actor: str | None) -> str:
        verb = "确认" if action == "acknowledge" else "解决"
        return f"已由 {actor} {verb}" if actor else f"已{verb}"

    def follow_up_status(self, action: str, actor: str | None) -> str:
        return self.followed(action, actor)

    def paren(self, text: str) -> str:
        return f"（{text}）"

    def reason(self, alert: AlertMessage) -> str:
        return zh_reason(alert.why) if alert.why is not None else alert.reason

    def item_reason(self, item: DigestItem) -> str:
        return zh_reason(item.why) if item.why is not None else item.reason

    def explanation(self, alert: AlertMessage) -> str:
        if alert.digest and alert.why is not None and alert.why.code.startswith("digest_"):
            return f"{len(alert.digest)} 条告警合并为一条消息：{zh_reason(alert.why)}"
        if alert.heat is not None:
            return zh_explanation(alert.heat)
        return alert.explanation

    def link_label(self, label: str) -> str:
        return "打开事件" if label == OPEN_INCIDENT else label

    def followers(self, count: int | None) -> str:
        return f"（粉丝 {zh_count(count)}）" if count is not None else ""

    def post_label(self, host: str | None) -> str:
        return f"查看原帖（{host}）" if host else "查看原帖"

    def more(self, count: int, what: Thing) -> str:
        return f"…另有 {count} {'条帖子' if what == 'post' else '起事件'}"

    def count(self, n: float) -> str:
        return zh_count(n)

    html_lang = "zh-CN"
    ack_off_title = "确认链接未启用"
    ack_off = "此服务器不签发确认链接。"
    ack_forged_title = "链接无效"
    ack_forged = "此确认链接无效，请使用告警中的链接。"
    ack_expired_title = "链接已过期"
    ack_expired = (
        "此确认链接已过期。请使用最新一条告警消息中的确认链接，或请值班人员在 crisiswatch 中确认。"
    )
    ack_used_title = "链接已使用"
    ack_used = "此确认链接已使用过。"
    ack_not_found_title = "未找到事件"
    ack_nothing_title = "无需确认"

    def ack_not_found(self, incident_id: int) -> str:
        return f"事件 {incident_id} 已不存在。"

    def ack_confirm_title(self, incident_id: int) -> str:
        return f"确认事件 #{incident_id}？"

    def ack_status(self, status: str) -> str:
        return f"状态：{ZH_STATUSES.get(status, status)}。"

    def ack_as(self, recipient: str) -> str:
        return f"将以 {recipient} 的身份确认，升级通知随即停止。"

    def ack_done_title(self, incident_id: int) -> str:
        return f"事件 #{incident_id} 已确认"

    def ack_done(self, actor: str | None) -> str:
        if not actor:
            return "已确认，升级通知已停止。"
        space = "" if actor.endswith("）") else " "  # none after a full-width parenthesis
        return f"已由 {actor}{space}确认，升级通知已停止。"

    def ack_link_actor(self, actor: str, recipient: str, channel: str) -> str:
        return f"{recipient}（通过 {channel} 的确认链接）"

    def ack_merged(self, incident_id: int, kept_id: int) -> str:
        return (
            f"事件 {incident_id} 已合并到事件 {kept_id}，此链接不能确认事件 {kept_id}。"
            f"请使用事件 {kept_id} 告警消息中的确认链接，或请值班人员在 crisiswatch 中确认。"
        )

    def ack_finished(self, incident_id: int, status: str) -> str:
        return f"事件 {incident_id} 的状态为{ZH_STATUSES.get(status, status)}，无需确认。"


_PHRASES: dict[str, English] = {"en": English(), "zh": Chinese()}


def phrases(language: str = "en") -> English:
    """The wording of ``language`` (``en`` for anything unknown)."""
    return _PHRASES.get(language, _PHRASES["en"])


# -- Chinese texts ---------------------------------------------------------------------------


def zh_count(n: float) -> str:
    """9500 -> "9500", 12_345 -> "1.2万", 1_234_567 -> "123万", 350_000_000 -> "3.5亿";
    a count that rounds to 10 000 of a unit is 1 of the next ("1亿", not "10000万")."""
    for size, unit, bigger in ((100_000_000, "亿", None), (10_000, "万", "亿")):
        if n >= size:
            value = n / size
            text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
            if text == "10000" and bigger:
                return f"1{bigger}"
            return f"{text.removesuffix('.0')}{unit}"
    text = f"{n:.0f}"
    return "1万" if text == "10000" else text


def zh_duration(delta: timedelta) -> str:
    """As ``reasons.describe``: "12 分钟" under two hours, then "2.5 小时"."""
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} 分钟"
    return f"{minutes / 60:.1f} 小时"


def zh_title(title: str) -> str:
    """An incident title of ours ("Acme: network-wide crisis") in Chinese ("Acme：全网危机");
    a drill item's "[DRILL] " as 【演练】. Any other title is shown as it is."""
    drill = ""
    if title.startswith(DRILL_TITLE):
        drill, title = "【演练】", title[len(DRILL_TITLE) :]
    for tier, name in TIER_NAMES.items():
        if title.endswith(f": {name}"):
            return f"{drill}{title[: -len(name) - 2]}：{ZH_TIER_NAMES[tier]}"
    return f"{drill}{title}" if drill else title


def _level(tier: int | None) -> str:
    return ZH_TIER_LEVELS.get(tier or 0, f"{tier} 级")


_ENDED = {"resolved": "已解决", "closed": "已关闭"}
ZH_STATUSES = {
    "open": "未确认",
    "acknowledged": "已确认",
    "mitigating": "处置中",
    "resolved": "已解决",
    "closed": "已关闭",
}
"""Incident statuses in Chinese (the ack link's pages)."""
_ZH_FIXED = {
    "new": "新事件",
    "silence_ended": "静默期已结束",
    "digest_held": "暂缓后一并发送",
    "digest_rate": "告警数超出渠道频率上限，合并发送",
}


def zh_reason(why: Reason) -> str:
    """The Chinese text of a ``Reason`` (its English one: ``Reason.english``)."""
    code, waited = why.code, zh_duration(why.duration())
    if code == "upgrade":
        return f"升级为{_level(why.tier)}（原为{_level(why.from_tier)}）"
    if code == "inhibition_ended":
        if why.merged_into:
            how = f"已并入事件 #{why.merged_into}"
        else:
            how = _ENDED.get(why.status or "", why.status or "")
        return f"抑制已解除（事件 #{why.incident} {how}）"
    if code == "escalation":
        return f"升级通知第 {why.level} 级：{waited}内无人确认"
    if code == "reminder":
        return f"提醒：已过 {waited}，仍无人确认"
    if code == "sla_missed":
        return f"{_level(why.tier)}响应时限（SLA）已超时"
    if code in ("task_due", "task_overdue"):
        owner = f"（负责角色：{why.role}）" if why.role else ""
        if code == "task_overdue":
            return f"任务逾期：「{why.title}」已逾期 {waited}{owner}"
        return f"任务提醒：「{why.title}」将在 {waited}后到期{owner}"
    if code in ("acknowledged", "resolved"):
        return f"已由 {why.actor} {'确认' if code == 'acknowledged' else '解决'}"
    if code == "superseded":
        return f"已被新一轮告警取代（{_level(why.tier)}）"
    if code.startswith("digest_"):
        return f"合并通知：{_ZH_FIXED[code]}"
    return _ZH_FIXED[code]


def _ratio(value: float) -> str:
    return (f"{value:.0f}" if value >= 10 else f"{value:.1f}").removesuffix(".0")


def zh_explanation(heat: AlertHeat) -> str:
    """The explanation paragraph in Chinese, from the heat behind it, e.g. "近 10 分钟 41 条帖子
    （累计 230 条，负面占 88%），来自 37 位作者，为平常的 9 倍；覆盖 120万 粉丝；预计将达
    900 条；已扩散至 3 个平台；投诉线索：退款、诈骗。" The parts and their order are the
    detector's English text's (``sentiment.detector.policy.explain``); a heat sent before
    Signals carried cues, high-reach accounts and burst windows names none."""
    if heat.kind == "surge":
        usual = ""
        if heat.rate_ratio is not None and heat.rate_ratio >= 1.5:
            usual = f"，为平常的 {_ratio(heat.rate_ratio)} 倍"
        return (
            f"全品牌声量激增：近 {heat.window_minutes} 分钟 {heat.mentions_window} 条帖子"
            f"{usual}，分散在多个话题中。"
        )
    head = f"近 {heat.window_minutes} 分钟 {heat.mentions_window} 条帖子"
    detail = []
    if heat.mentions != heat.mentions_window:
        detail.append(f"累计 {heat.mentions} 条")
    if heat.negative_share > 0:
        detail.append(f"负面占 {heat.negative_share:.0%}")
    if detail:
        head += f"（{'，'.join(detail)}）"
    head += f"，来自 {heat.unique_authors} 位作者"
    if heat.rate_ratio is not None and heat.rate_ratio >= 1.5:
        head += f"，为平常的 {_ratio(heat.rate_ratio)} 倍"
    parts = [head]
    if heat.reach > 0:
        parts.append(f"覆盖 {zh_count(heat.reach)} 粉丝")
    if heat.high_reach_authors:
        parts.append(f"{heat.high_reach_authors} 个高影响力账号参与")
    if heat.burst_windows:
        windows = "、".join(str(w) for w in heat.burst_windows)
        parts.append(f"声量远超平常（{windows} 分钟窗口）")
    if heat.predicted_size is not None and heat.predicted_size >= heat.mentions + 1:
        parts.append(f"预计将达 {zh_count(heat.predicted_size)} 条")
    if heat.platforms > 1:
        parts.append(f"已扩散至 {heat.platforms} 个平台")
    if heat.complaint_cues:
        parts.append("投诉线索：" + "、".join(heat.complaint_cues))
    return "；".join(parts) + "。"
