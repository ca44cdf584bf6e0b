// The web chat: sends each message to the communicator (POST /api/chat) and shows the conversation.
// A message keeps its id until it is answered, so sending it again after an error is safe.
// Who the user is comes from the server (a signing-in proxy, or an anonymous cookie), never from the page.
"use strict";

const ACTION_NAMES = {
  "создать jira-task": "создана задача в Jira",
  "написать в telegram сотруднику": "запрос передан сотруднику",
  "написать в рассылку департамента": "письмо в рассылку департамента",
};
const STORE = "multyworkemon-chat";
const POLL_MS = 3000;

const $ = (id) => document.getElementById(id);
const state = JSON.parse(sessionStorage.getItem(STORE) || '{"items": []}');
state.thread = state.thread || newId(); // this conversation; "Новый разговор" gets the next one from the server
let pending = null; // {id, text} of the message being sent or waiting to be sent again

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function save() {
  sessionStorage.setItem(STORE, JSON.stringify(state));
}

function render() {
  const list = $("conversation");
  list.replaceChildren();
  for (const item of state.items) {
    const li = document.createElement("li");
    li.className = item.kind;
    li.textContent = item.text;
    if (item.meta) {
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = item.meta;
      li.appendChild(meta);
    }
    if (item.sources && item.sources.length) {
      const sources = document.createElement("span");
      sources.className = "sources";
      for (const [n, source] of item.sources.entries()) {
        const a = document.createElement("a");
        a.href = source.url;
        a.textContent = `[${n + 1}] ${source.title}`;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        sources.appendChild(a);
      }
      li.appendChild(sources);
    }
    if (item.turn) li.appendChild(feedbackButtons(item));
    list.appendChild(li);
  }
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

// 👍/👎 under an answer: the server keeps one rating per answer, and a second press changes it.
function feedbackButtons(item) {
  const box = document.createElement("span");
  box.className = "feedback";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Ответ помог?");
  for (const [rating, label, name] of [["up", "👍", "Ответ помог"], ["down", "👎", "Ответ не помог"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "rate " + rating;
    button.textContent = label;
    button.title = name;
    button.setAttribute("aria-label", name);
    button.setAttribute("aria-pressed", String(item.rating === rating));
    button.addEventListener("click", () => rate(item, rating));
    box.appendChild(button);
  }
  return box;
}

async function rate(item, rating) {
  try {
    const response = await fetch("/api/chat/feedback", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ turn_id: item.turn, rating }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `ошибка ${response.status}`);
    item.rating = rating;
    save();
    render();
    $("status").textContent = "Спасибо за оценку!";
  } catch (error) {
    $("status").textContent = `Оценка не сохранена: ${error.message}`;
  }
}

function add(item) {
  state.items.push(item);
  save();
  render();
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) { $("message").focus(); return; }
  if (!pending || pending.text !== text) {
    pending = { id: newId(), text };
    add({ kind: "user", text });
  }
  $("send").disabled = true;
  $("status").textContent = "Думаю над ответом…";
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, message_id: pending.id, thread: state.thread }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(body.message || `ошибка ${response.status}`);
    }
    pending = null;
    $("message").value = "";
    if (body.silent) {
      // An operator holds this conversation: their reply arrives by the poll below.
      $("status").textContent = "Сообщение передано сотруднику поддержки: он ответит здесь.";
      return;
    }
    const done = body.action_result && body.action_result.status === "done" ? ACTION_NAMES[body.action] : "";
    add({
      kind: body.action === "уточнить" ? "bot question" : "bot",
      text: body.reply,
      meta: body.action === "уточнить" ? "уточняющий вопрос" : done,
      sources: body.sources || [],
      turn: body.rated_turn || null,
    });
    $("status").textContent = "";
  } catch (error) {
    add({ kind: "bot error", text: `Не получилось: ${error.message}. Текст остался в поле, отправьте его ещё раз.` });
    $("status").textContent = "";
  } finally {
    $("send").disabled = false;
    $("message").focus();
  }
}

async function reset() {
  $("reset").disabled = true;
  try {
    // The server closes this conversation, so an open question is not continued by the next message.
    const response = await fetch("/api/chat/new", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ thread: state.thread }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `ошибка ${response.status}`);
    state.thread = body.thread;
    state.items = [];
    pending = null;
    save();
    render();
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = `Новый разговор не начат: ${error.message}`;
  } finally {
    $("reset").disabled = false;
    $("message").focus();
  }
}

async function showWho() {
  const who = $("who");
  try {
    const response = await fetch("/api/me", { cache: "no-store" });
    const body = await response.json();
    if (body.mode === "signed-in") {
      who.textContent = `Вы вошли как ${body.username}`;
    } else {
      who.classList.add("anonymous");
      who.textContent = "Анонимный режим: я отвечаю и даю ссылки, но ничего не делаю от вашего имени " +
        "(задачи в Jira, письма, сообщения коллегам).";
    }
  } catch (error) {
    who.textContent = "";
  }
}

// An operator who took the conversation over answers here: ask every few seconds for their replies.
async function poll() {
  try {
    const query = new URLSearchParams({ thread: state.thread, after: String(state.operatorSeen || 0) });
    const response = await fetch(`/api/chat/updates?${query}`, { cache: "no-store" });
    if (response.ok) {
      for (const reply of (await response.json()).items || []) {
        state.operatorSeen = Math.max(state.operatorSeen || 0, reply.turn_id);
        add({ kind: "bot operator", text: reply.text, meta: "ответ сотрудника поддержки" });
      }
    }
  } catch (error) {
    // Offline for a moment: the next poll catches up.
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  save();
  showWho();
  $("chat").addEventListener("submit", send);
  $("reset").addEventListener("click", reset);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat").requestSubmit();
  });
  render();
  poll();
});
