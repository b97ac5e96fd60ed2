"""Every user-facing text of the Slack surface, in one place."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from mcp_core.agent import ToolProgress
from mcp_core.models import Connection
from mcp_core.registry import HealthReport
from run_cards import operator_var
from run_cards.oauth_clients import oauth_client_var

USAGE_INTRO = "*/mcp* — connect your own MCP servers and use their tools."
USAGE_OUTRO = (
    "Then mention me in a channel or DM me: I answer in the thread with *your* tools, "
    "and ask before running one that may change things."
)

NO_CONNECTIONS = "You have no MCP connections yet. Try `/mcp connect`."
INTERNAL_ERROR = "⚠️ Something went wrong on our side. It has been logged; please try again in a moment."
NOT_YOUR_CONNECTION = "⛔ That connection is not one of yours (or it was removed). `/mcp list` shows yours."
FORM_DID_NOT_OPEN = "⚠️ The form could not open in time. Please run `/mcp connect` again."
WHICH_ONE = "Which one? `/mcp disconnect <name>`"
CARD_NOT_ALLOWED = "This card is for admins only."
NO_CREDENTIAL_STORE = "This bot has no credential store configured, so it cannot keep a token."
ALL_TOOLS = "Tools of all your connections"
THINKING = "🤔 Thinking…"
STATUS_THINKING = "Thinking…"
AGENT_NOT_CONFIGURED = (
    "I can't answer yet: no language model is configured. An admin needs to set OPENAI_API_KEY "
    "(and OPENAI_BASE_URL for a non-OpenAI endpoint). Meanwhile `/mcp` works."
)
APPROVAL_NOT_YOURS = "Only the person who asked can approve or deny this call."
APPROVAL_GONE = "This question is no longer open (it was answered, it expired, or the bot restarted)."
STOP_NOT_YOURS = "Only the person who asked can stop this."
STOP_GONE = "This answer has already finished (or the bot restarted), so there is nothing to stop."
STOP_PARKED = "This answer is waiting for your Approve or Deny; press *Deny* to end it."
STOP_FAILED = "I could not stop it just now: my database did not answer. Try again in a moment."
FORM_DID_NOT_OPEN_ARGS = "⚠️ The arguments could not open in time. Click *Show all arguments* again."
ARGUMENTS_TOO_LONG = (
    "The arguments are too long for the person to review before approving, so the call was not "
    "run. Use shorter arguments, or split the work into several calls."
)
OTHERS_WROTE = "Someone else wrote in this thread, so I ask before every tool: check that *you* want this."
HEALTH_ERROR_CHARS = 500
ALWAYS_ALLOW = "Always allow"
APPROVAL_NOT_OFFERED = "*Always allow* is not offered for this call: approve or deny it."
ASK_AGAIN = "Ask again"
TURN_ON = "Turn on"
TURN_OFF = "Turn off"
OFF_BADGE = "off"
ALWAYS_BADGE = "runs without asking"
ALWAYS_ALLOWED_LINE = "Runs without asking:"
SWITCHED_OFF_LINE = "Switched off:"


def not_remembered(reason: object) -> str:
    """An *Always allow* click whose choice could not be saved: the call is approved once."""
    return f"⚠️ Approved this once, but I could not remember it: {reason}"


def usage(lines: Sequence[str]) -> str:
    """The ``/mcp`` help around one line per subcommand (``bot.commands`` writes the lines)."""
    return "\n".join([USAGE_INTRO, *lines, USAGE_OUTRO])


def list_summary(connections: Sequence[Connection]) -> str:
    if not connections:
        return NO_CONNECTIONS
    return f"You have {len(connections)} MCP connection{'s' if len(connections) != 1 else ''}."


def unknown_connection(name: str, names: Sequence[str]) -> str:
    if not names:
        return f"You have no connection named “{name}”. {NO_CONNECTIONS}"
    return f"You have no connection named “{name}”. Yours: {', '.join(f'`{n}`' for n in names)}."


def unknown_card(card: str, available: Sequence[str]) -> str:
    return f"There is no run card “{card}”. Available: {', '.join(f'`{c}`' for c in available)}."


def operator_value_refused(card_id: str, field_key: str) -> str:
    return (
        f"The value of {operator_var(card_id, field_key)} in the bot's .env points somewhere the "
        "network policy refuses (a private or local address). Type another value, or allow the "
        "host in MCP_ALLOWED_HOSTS."
    )


def duplicate_name(name: str) -> str:
    return f"You already have a connection named “{name}”."


def tools_of(name: str) -> str:
    return f"Tools of {name}"


def disconnect_prompt(name: str) -> str:
    return f"Disconnect {name}?"


def disconnected(name: str) -> str:
    return f"🗑️ Disconnected *{name}*."


def connected(name: str, tool_count: int) -> str:
    return f"✅ Connected *{name}* — {tool_count} tools available"


def _reason(name: str, error: object) -> str:
    """The error's text without the connection name it starts with (the line names it already)."""
    text = str(error)
    return text.removeprefix(f"{name}: ") or text


def connect_failed(name: str, error: object) -> str:
    return f"❌ Couldn't connect *{name}*: {_reason(name, error)}"


def sign_in_label(name: str) -> str:
    """The text of a sign-in link button (Slack: at most 75 characters)."""
    label = f"Sign in to {name}"
    return label if len(label) <= 75 else label[:74] + "…"


SIGN_IN_AGAIN = "Sign in again"


SIGN_IN_LINK_LIFE = "The link works once, for 10 minutes; I'll DM you when it's connected."


def sign_in_needed(name: str) -> str:
    """A connect that waits for the person to sign in with OAuth."""
    return f"🔐 Sign in to connect *{name}*. {SIGN_IN_LINK_LIFE}"


def sign_in_again_needed(name: str) -> str:
    """A connection whose sign-in ran out (or was refused): a new link."""
    return f"🔐 *{name}* needs you to sign in again. {SIGN_IN_LINK_LIFE}"


def oauth_client_missing(
    name: str, card_id: str | None, issuer: str, *, admin: bool = False, redirect_url: str = ""
) -> str:
    """The server wants OAuth but lets no client register: what an admin must do. ``admin``:
    the reader is one, and gets the *Register a client* form (``bot.admin_clients``). The
    operator's ``OAUTH_<CARD>_CLIENT_ID`` is named for a card's server only: it serves no other URL."""
    head = f"❌ Couldn't connect *{name}*: its sign-in server {issuer} does not let the bot register itself."
    ids = ""
    if card_id and card_id != "custom":
        ids = f"{oauth_client_var(card_id, 'CLIENT_ID')} / {oauth_client_var(card_id, 'CLIENT_SECRET')}"
    if admin:
        also = f" (or set {ids} for the bot)" if ids else ""
        return (
            f"{head} Register the bot there as an OAuth app with the callback URL `{redirect_url}`, "
            f"then give me its client id with *{REGISTER_CLIENT}*{also}."
        )
    also = f", or set {ids} for the bot" if ids else ""
    return (
        f"{head} An admin must register the bot there and give it the client id: in Slack, by "
        f"connecting this same server{also}. Then click Retry."
    )


REGISTER_CLIENT = "Register a client"
CLIENT_FORM_TITLE = "Register a client"
ADMINS_ONLY = "Only an admin (ADMIN_USER_IDS) can register an OAuth client for the workspace."
CLIENT_ID_FORMAT = "A client id has no spaces."


def client_form_intro(name: str, server_url: str, redirect_url: str) -> str:
    return (
        f"*{name}* ({server_url}) lets the bot sign people in only with a client registered there. "
        f"Register an OAuth app at its sign-in server with the callback URL `{redirect_url}` and "
        "enter what it gives you. Everyone in this workspace connecting exactly this URL signs in "
        "with it; the secret is encrypted and never shown again."
    )


def client_registered(name: str) -> str:
    return f"🔑 Client registered for *{name}*."


def failed(reason: object) -> str:
    return f"❌ {reason}"


def health(report: HealthReport) -> str:
    if report.ok:
        return f"🟢 *{report.connection}*: {report.tool_count} tools, answered in {report.latency_ms:.0f} ms"
    error = _reason(report.connection, report.error or "unknown error")
    if len(error) > HEALTH_ERROR_CHARS:
        error = error[: HEALTH_ERROR_CHARS - 1] + "…"
    return f"🔴 *{report.connection}*: {error} ({report.latency_ms:.0f} ms)"


# -- the sign-in callback page (HTML, escaped by bot.oauth_web) -----------------------------------

PAGE_TITLE = "Slack MCP bot"
PAGE_CONNECTED = "Connected — you can close this tab"
PAGE_NOT_SIGNED_IN = "Sign-in not completed"
PAGE_OPEN_FAILED = "Signed in, but the server could not be opened"
PAGE_UNEXPECTED = "Something went wrong on our side. It has been logged; start again from Slack."


def page_connected(name: str, tool_count: int) -> str:
    return f"{name} is connected with {tool_count} tools. Slack has the details."


def page_sign_in_again(name: str) -> str:
    return f"{name} asks you to sign in once more. Slack has a new link for it."


_TOOL_STATE = {"pending": "⏳", "running": "⏳", "done": "✅", "failed": "⚠️", "denied": "🚫", "stopped": "⏹️"}


def shown_tool_name(name: str) -> str:
    """A tool name the model wrote, fit to show: catalog names are ``[A-Za-z0-9_-]{1,64}``,
    so anything else (mentions, markup, a pasted secret) is dropped rather than rendered."""
    return re.sub(r"[^A-Za-z0-9_-]", "", name)[:64] or "?"


def tool_line(progress: ToolProgress) -> str:
    """One progress line: state, tool name and, once finished, its time."""
    line = f"{_TOOL_STATE[progress.state]} `{shown_tool_name(progress.call.name)}`"
    if progress.state == "pending":
        return line + " (waiting)"
    if progress.state == "running":
        return line + (f" … {_inert(progress.note)}" if progress.note else " …")
    if progress.state == "denied":
        return line + " not run"
    if progress.state == "stopped":
        return line + " stopped"
    if progress.result is not None and progress.result.latency_ms:
        line += f" ({progress.result.latency_ms:.0f} ms)"
    return line + (" failed" if progress.state == "failed" else "")


def status_calling(tool: str) -> str:
    return f"Calling {shown_tool_name(tool)}…"


def _inert(words: str) -> str:
    """A server's words in a line of mrkdwn: no mentions, links or code spans of its own."""
    return words.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def approval_stopped(tool: str) -> str:
    return f"⏹️ Stopped: `{shown_tool_name(tool)}` was not run."


def stop_not_yours(asker: str) -> str:
    return f"Only <@{asker}>, who asked, can stop this answer." if asker else STOP_NOT_YOURS


def working(lines: list[str]) -> str:
    return "\n".join(["🤔 Working on it…", *lines])


def approval_question(
    tool: str,
    user_id: str,
    *,
    others_wrote: bool = False,
    read_only: bool | None = None,
    destructive: bool | None = None,
) -> str:
    """Why the bot asks, in the server's own words where it gave any (its annotations are a
    claim, not a fact, so they are labelled as the server's)."""
    if others_wrote:
        return f"<@{user_id}>, may I run `{tool}`? {OTHERS_WROTE}"
    if read_only:
        why = "The server says it only reads."
    elif destructive:
        why = "The server says it may delete or overwrite things."
    elif destructive is False:
        why = "The server says it may change things, but not delete or overwrite them."
    else:
        why = "It may change something (the server does not say it only reads)."
    return f"<@{user_id}>, may I run `{tool}`? {why}"


def server_hints(hints: dict[str, bool | None]) -> str:
    """The tool's annotations as the server states them, or "" when it states none."""
    words = {
        "read_only": ("read-only", "may write"),
        "destructive": ("destructive", "not destructive"),
        "idempotent": ("idempotent", "not idempotent"),
        "open_world": ("reaches outside systems", "closed world"),
    }
    said = [words[k][0] if v else words[k][1] for k, v in hints.items() if v is not None and k in words]
    return f"_The server says: {', '.join(said)}._" if said else ""


def arguments_too_long_to_show(chars: int) -> str:
    return (
        f"The arguments are {chars:,} characters, too long for this message. *Show all arguments* "
        "opens them whole: read them before you approve."
    )


def approval_outcome(tool: str, user_id: str, outcome: str, connection: str = "") -> str:
    if outcome == "always":
        return (
            f"✅ <@{user_id}> approved `{tool}` and lets it run without asking from now on "
            f"(*Ask again* under *{connection}* in `/mcp list` undoes that)."
        )
    if outcome == "approved":
        return f"✅ <@{user_id}> approved `{tool}`."
    if outcome == "denied":
        return f"🚫 <@{user_id}> denied `{tool}`; it was not run."
    return f"⌛ No answer in time: `{tool}` was not run."


# -- what tools returned besides text (bot.rich_results), and feedback on answers (bot.feedback)

FEEDBACK_THANKS = "Thanks for the feedback"
FEEDBACK_NOT_SAVED = "⚠️ Your feedback could not be saved just now. Please try again in a moment."
FEEDBACK_GOOD = "👍"
FEEDBACK_BAD = "👎"
FEEDBACK_GOOD_LABEL = "This answer was helpful"
FEEDBACK_BAD_LABEL = "This answer was not helpful"
LINKS_INTRO = "🔗 Links from the tools:"


def image_not_shown(tool: str, why: str) -> str:
    return f"🖼️ An image from `{tool}` was not shown: {why}."


def images_over_cap(count: int, cap: int) -> str:
    return f"🖼️ {count} more image{'s' if count != 1 else ''} not shown (at most {cap} per answer)."


def images_not_uploaded(reason: str) -> str:
    return f"🖼️ The tools' images could not be uploaded ({reason})."


def table_caption(tool: str, shown: int, total: int) -> str:
    rows = f"{total} row{'s' if total != 1 else ''}"
    return f"📋 From `{tool}`: {rows}" + (f", the first {shown} shown" if shown < total else "")


def tables_over_cap(count: int) -> str:
    return f"📋 {count} more table{'s' if count != 1 else ''} not shown here; the answer above used them."


# -- a server's questions mid-call (bot.questions); server words arrive escaped ----------------

QUESTION_NOT_YOURS = "Only the person who asked can answer this question."
QUESTION_GONE = "This question is no longer open (it was answered, it timed out, or the bot restarted)."
QUESTION_DID_NOT_OPEN = (
    "Slack did not open the form (the click may have taken too long). Click the button again."
)
SERVER_SAID_NOTHING = "_(no message)_"
PUNYCODE_WARNING = (
    "⚠️ The address uses an internationalized (punycode, `xn--`) name: it may imitate a familiar "
    "site. Check it letter by letter."
)


def question_not_yours(asker: str) -> str:
    return f"Only <@{asker}>, who asked, can answer this question." if asker else QUESTION_NOT_YOURS


def server_says(server: str) -> str:
    return f"*{server}* says (its own words, not the bot's):"


def question_posted(server: str, asker: str) -> str:
    return f"🙋 *{server}* has a question for <@{asker}> before it can go on."


def answer_button(server: str) -> str:
    return f"Answer {server}'s question"


def modal_title(server: str) -> str:
    return f"{server} asks"


def modal_asked_by(server: str) -> str:
    return f"*{server}* asks this while running a tool. Don't enter passwords or tokens here."


def question_outcome(server: str, asker: str, action: str) -> str:
    if action == "accept":
        return f"✅ <@{asker}> answered *{server}*'s question."
    if action == "decline":
        return f"🚫 <@{asker}> declined *{server}*'s question."
    if action == "unanswered":
        return f"⌛ *{server}*'s question closed unanswered (no answer in time, or no longer needed)."
    if action == "failed":
        return f"⚠️ *{server}*'s question could not be asked; it was cancelled."
    return f"↩️ <@{asker}> closed *{server}*'s question without answering."


def question_refused(server: str, why: str) -> str:
    return f"⚠️ *{server}* asked a question I can't show: {why}. I told it no."


def link_posted(server: str, host: str) -> str:
    return f"🔗 {server} asks you to open a page on {host}"


def link_intro(server: str, host: str) -> str:
    return (
        f"🔗 *{server}* asks you to open a page on *{host}*. Only you see this; the bot has not "
        "opened it and will not."
    )


def full_link(url: str) -> str:
    return f"Full address: `{url}`"


def open_link_button(host: str) -> str:
    return f"Open {host}"


def link_shown_in_thread(server: str, asker: str) -> str:
    return f"🔗 *{server}* sent <@{asker}> a link to open; only they can see it."


# -- turns interrupted by a restart (bot.takeover) ----------------------------------------------

INTERRUPTED = "⚠️ Interrupted: I was restarted before I could finish this answer (see below)."
"""What a dead turn's own messages (progress, streamed words) are edited into."""


def interrupted(
    ran: Sequence[str],
    maybe: Sequence[str],
    not_run: Sequence[str],
    *,
    waiting: bool,
    tasks: Sequence[str] = (),
    following: Sequence[str] = (),
) -> str:
    """The thread's message about a turn whose process died: what ran, what may have run (it was
    sent, no answer came back), what did not; nothing is run again. Among the calls that may
    have run, their servers ran ``following`` as tasks this process follows (their results
    come next) and ``tasks`` as tasks it cannot follow (a local server, a tool gone)."""
    opening = (
        "I was restarted while waiting for an answer to my question, so the question expired"
        if waiting
        else "I was restarted while working on this"
    )
    parts = [
        f"{_names(ran)} ran" if ran else "",
        f"{_names(maybe)} may have run" if maybe else "",
        f"{_names(not_run)} did not run" if not_run else "",
    ]
    said = "; ".join(p for p in parts if p)
    one = len(tasks) == 1
    still = (
        f" {_names(tasks)} {'was' if one else 'were'} running as {'a task' if one else 'tasks'} on "
        f"the server and may still finish there; {'its result' if one else 'their results'} will "
        "not be posted here."
        if tasks
        else ""
    )
    one = len(following) == 1
    follows = (
        f" {_names(following)} {'is' if one else 'are'} still running as {'a task' if one else 'tasks'} "
        f"on the server: I will post {'its result' if one else 'their results'} here when "
        f"{'it ends' if one else 'they end'}."
        if following
        else ""
    )
    return (
        f"⚠️ {opening}{'; ' + said if said else ''} — nothing was run again.{still}{follows} "
        "Ask again to continue."
    )


TASK_RESULT_CHARS = 2800
"""A followed task's result shown in the thread (one section's worth)."""


def task_ended(name: str, text: str, *, is_error: bool) -> str:
    """A followed task's result (the server's words, inert: no mentions, links, or an end to
    the code block), posted in its turn's thread."""
    body = _inert(text)
    if len(body) > TASK_RESULT_CHARS:
        body = body[:TASK_RESULT_CHARS] + "…"
    head = (
        f"⚠️ `{shown_tool_name(name)}` ended with an error on its server after my restart"
        if is_error
        else f"✅ `{shown_tool_name(name)}` finished on its server after my restart"
    )
    if not body.strip():
        return f"{head} (it returned nothing)."
    return f"{head}:\n```{body}```\nAsk me about it to continue."


def task_stopped(name: str) -> str:
    """A followed task the person stopped."""
    return f"⏹️ `{shown_tool_name(name)}` was stopped: I asked its server to cancel it."


def task_lost(name: str, reason: str) -> str:
    """A followed task whose result could not be had (``reason``: an error's safe text)."""
    tool = shown_tool_name(name)
    return f"⚠️ I could not get the result of `{tool}` after my restart: {_inert(reason)[:400]}"


def _names(names: Sequence[str]) -> str:
    quoted = [f"`{name[:80]}`" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


STATS_WINDOWS = "Stats cover `7d` (the default) or `30d`: try `/mcp stats 30d`."
CHART_BUTTON = "Send me a chart"
CHART_OFFER = "A chart of your calls and errors per day, sent to our DM:"


def chart_nothing_yet(days: int) -> str:
    return f"📈 No tool calls in the last {days} days, so there is nothing to chart yet."


def chart_comment(days: int, calls: int, errors: int) -> str:
    """The line above the chart in the person's DM."""
    return f"📈 Your MCP tool calls and errors per day, last {days} days: {calls:,} calls, {errors:,} errors."


def chart_sent(permalink: str, days: int) -> str:
    where = f"<{permalink}|in our DM>" if _linkable(permalink) else "in our DM"
    return f"📈 Sent your chart of the last {days} days {where}."


def chart_not_sent(error: str, scope: str) -> str:
    """The DM or the upload of a chart was refused (``bot.dm_files.FileNotSent``)."""
    why = _not_sent_why(error, scope)
    return f"⚠️ Your usage chart could not be sent: {why}. `/mcp stats` shows the same numbers as text."


def newest_chart(permalink: str, days: int, sent_at: datetime) -> str:
    """The Home's line about the newest chart; the date shows in the reader's time zone."""
    label = f"Usage, last {days} days"
    chart = f"<{permalink}|{label}>" if _linkable(permalink) else f"{label} (in our DM)"
    when = f"<!date^{int(sent_at.timestamp())}^{{date_short_pretty}}|{sent_at:%Y-%m-%d}>"
    return f"Newest chart: {chart} (sent {when})"


def _linkable(url: str) -> bool:
    """A link Slack gave us that is safe inside ``<url|label>``."""
    return url.startswith("https://") and not any(c in url for c in "|<> ")


# -- workspace policy (bot.admin, bot.connect, bot.chat) -------------------------------------------

CARD_NOT_IN_POLICY = "Your workspace's admins have not allowed this server. Ask them, or pick another card."
NO_CARDS_ALLOWED = "Your workspace's admins allow no servers to be connected right now."


def may_not_add(who: str, usergroup_id: str | None) -> str:
    if who == "usergroup" and usergroup_id:
        return (
            f"In this workspace only members of <!subteam^{usergroup_id}> may add MCP connections. "
            "Ask an admin to add you."
        )
    return "In this workspace only admins may add MCP connections. Ask an admin to add it for you."


def card_not_allowed(card: str, offered: Sequence[str]) -> str:
    also = f" You may connect: {', '.join(f'`{c}`' for c in offered)}." if offered else ""
    return f"Your workspace's admins have not allowed “{card}”.{also}"


def channel_tools_note(rule: str, left_out: int) -> str:
    if rule == "none":
        return (
            "In this channel your workspace's admins allow no tools, "
            f"so I answer without your {left_out} tool(s)."
        )
    return (
        "In this channel your workspace's admins allow only read-only tools: "
        f"{left_out} of your tools that may change things are left out."
    )


# -- /mcp admin (bot.admin) -------------------------------------------------------------------------

ADMINS_ONLY = (
    "`/mcp admin` is for this workspace's admins: Slack workspace admins and owners, and the "
    "people in the bot's ADMIN_USER_IDS."
)
ADMIN_WINDOWS = "Workspace stats cover `7d` (the default) or `30d`: try `/mcp admin 30d`."
POLICY_UNCHANGED = "The workspace policy is unchanged (nothing was different)."


def policy_saved(changed: Sequence[str]) -> str:
    names = ", ".join(f"`{name}`" for name in changed)
    return f"✅ Workspace policy saved. Changed: {names}. The change is in the audit log."


def export_comment(title: str, rows: int) -> str:
    return f"{title}: {rows:,} rows. Requested with `/mcp admin`."


def export_sent(title: str, permalink: str) -> str:
    where = f"<{permalink}|in your DM with me>" if permalink.startswith("https://") else "in your DM with me"
    return f"📄 {title} is {where}."


def file_not_sent(error: str, scope: str) -> str:
    """An admin's export was refused (``bot.dm_files.FileNotSent``)."""
    return f"⚠️ The file could not be sent: {_not_sent_why(error, scope)}."


def _not_sent_why(error: str, scope: str) -> str:
    """Slack's refusal to open the DM or take an upload: ``error`` is Slack's word ("" when the
    upload itself failed), ``scope`` the one that step needs."""
    if error == "missing_scope":
        return f"the app lacks Slack's `{scope}` scope (reinstall it from the current manifest.yml)"
    if error:
        return f"Slack said `{_inert(error)[:80]}`"
    return "the upload to Slack failed"
