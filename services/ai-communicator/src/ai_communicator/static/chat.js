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
      for (const source of item.sources) {
        const a = document.createElement("a");
        a.href = source.url;
        a.textContent = source.title;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        sources.appendChild(a);
      }
      li.appendChild(sources);
    }
    list.appendChild(li);
  }
  list.lastElementChild?.scrollIntoView({ block: "end" });
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
    const done = body.action_result && body.action_result.status === "done" ? ACTION_NAMES[body.action] : "";
    add({
      kind: body.action === "уточнить" ? "bot question" : "bot",
      text: body.reply,
      meta: body.action === "уточнить" ? "уточняющий вопрос" : done,
      sources: body.sources || [],
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

document.addEventListener("DOMContentLoaded", () => {
  save();
  showWho();
  $("chat").addEventListener("submit", send);
  $("reset").addEventListener("click", reset);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat").requestSubmit();
  });
  render();
});
