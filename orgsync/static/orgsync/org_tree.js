/* Staff org-tree page (orgsync/staff_views.py): reads the staff JSON API level by level.
 *
 * The page loads the top-level departments (and orphans) with their children; a department's
 * children are fetched when it is first expanded, a page at a time ("Show more"), so a tenant
 * of 100,000 departments only costs what is opened. Users are fetched per department on demand.
 * Search runs on the server and answers compact paths (the first and last steps with the count
 * left out between, issue 14): the gap is read on demand, a bounded page at a time, and a hit
 * deep in a long chain is revealed under a "levels not shown" placeholder instead of opening
 * every level above it.
 */
(function () {
  "use strict";

  const app = document.getElementById("org-tree-app");
  if (!app) return;
  const apiBase = app.dataset.apiBase;
  const isTest = app.dataset.test === "1";
  const pageSize = Number(app.dataset.pageSize) || 200;
  const treeRoot = document.getElementById("org-tree");
  const errorBox = document.getElementById("org-error");

  // --- helpers ---------------------------------------------------------------------------------

  function apiUrl(path, params) {
    const url = new URL(apiBase + path, window.location.origin);
    if (isTest) url.searchParams.set("test", "1");
    for (const [key, value] of Object.entries(params || {})) {
      url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = body.detail || JSON.stringify(body);
      } catch (_) {
        /* not JSON: keep the status text */
      }
      throw new Error(`${response.status} ${detail}`);
    }
    return response.json();
  }

  function showError(error) {
    errorBox.textContent = `Could not load: ${error.message}`;
    errorBox.hidden = false;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function childItems(list) {
    return Array.from(list.children).filter((item) => item.classList.contains("org-node"));
  }

  function findChild(list, orgCode) {
    return childItems(list).find((item) => item.dataset.orgCode === orgCode) || null;
  }

  // --- departments -----------------------------------------------------------------------------

  function nodeElement(node) {
    const item = el("li", {
      class: "org-node" + (node.orphan ? " org-orphan" : ""),
      role: "treeitem",
      "data-org-code": node.orgCode,
      "aria-expanded": node.childCount ? "false" : null,
    });
    item.orgNode = node;
    const toggle = el("button", {
      type: "button",
      class: "org-toggle",
      "aria-label": node.childCount ? "expand" : "no sub-departments",
      disabled: node.childCount ? null : true,
      text: node.childCount ? "▸" : "·",
      onclick: () => toggleNode(item).catch(showError),
    });
    const usersButton = el("button", {
      type: "button",
      class: "org-users-toggle",
      disabled: node.directUsers ? null : true,
      text: node.directUsers ? `Users (${node.directUsers})` : "No users",
      onclick: () => toggleUsers(item).catch(showError),
    });
    const row = el(
      "div",
      { class: "org-row" },
      toggle,
      el("span", { class: "org-name", text: node.orgName }),
      " ",
      el("code", { class: "org-code", text: node.orgCode }),
      node.orphan
        ? el("span", {
            class: "org-badge",
            text: `orphan: parent ${node.parentCode} not synced`,
          })
        : null,
      el("span", {
        class: "org-counts",
        title: "users in this department / with all its sub-departments",
        text: `${node.directUsers} / ${node.totalUsersExact ? "" : "≥ "}${node.totalUsers} users`,
      }),
      node.childCount
        ? el("span", { class: "org-child-count", text: plural(node.childCount, "sub-department") })
        : null,
      usersButton
    );
    const users = el("div", { class: "org-users", hidden: true });
    const children = el("ul", { class: "org-children", role: "group", hidden: true });
    item.append(row, users, children);
    if (Array.isArray(node.children)) addChildren(item, node.children);
    return item;
  }

  // Past a few levels a list is barely indented, so a long chain stays on the screen.
  const DEEP = 8;

  function indent(list) {
    let level = 0;
    for (let up = list.parentElement; up; up = up.parentElement.closest("ul.org-children")) {
      level += 1;
      if (level > DEEP) {
        list.classList.add("org-deep");
        return;
      }
      if (!up.parentElement) return;
    }
  }

  function addChildren(item, nodes) {
    const list = item.querySelector(":scope > ul.org-children");
    indent(list);
    for (const node of nodes) {
      if (!findChild(list, node.orgCode)) list.append(nodeElement(node));
    }
    item.loaded = (item.loaded || 0) + nodes.length;
    renderMore(item);
  }

  // "Show more" under a department whose children are only partly loaded.
  function renderMore(item) {
    const list = item.querySelector(":scope > ul.org-children");
    const old = list.querySelector(":scope > li.org-more");
    if (old) old.remove();
    const total = item.orgNode.childCount;
    if (item.loaded < total) {
      const button = el("button", {
        type: "button",
        text: `Show more (${item.loaded} of ${total} shown)`,
        onclick: () => loadChildren(item).catch(showError),
      });
      list.append(el("li", { class: "org-more" }, button));
    }
  }

  // The next page of a department's children: after the previous page's last orgCode (an
  // index range however long the list), the first page from the start.
  async function loadChildren(item) {
    const params = { root: item.dataset.orgCode, depth: 1, limit: pageSize };
    if (item.nextAfter) params.after = item.nextAfter;
    const data = await getJSON(apiUrl("/org-tree", params));
    item.nextAfter = data.nextAfter;
    addChildren(item, data.nodes[0].children || []);
  }

  async function expand(item) {
    if (!item.orgNode.childCount) return;
    if (item.loaded === undefined) {
      item.loading = item.loading || loadChildren(item);
      await item.loading;
    }
    item.querySelector(":scope > ul.org-children").hidden = false;
    item.setAttribute("aria-expanded", "true");
    item.querySelector(":scope > .org-row > .org-toggle").textContent = "▾";
  }

  function collapse(item) {
    item.querySelector(":scope > ul.org-children").hidden = true;
    item.setAttribute("aria-expanded", "false");
    item.querySelector(":scope > .org-row > .org-toggle").textContent = "▸";
  }

  async function toggleNode(item) {
    if (item.getAttribute("aria-expanded") === "true") collapse(item);
    else await expand(item);
  }

  // --- users -----------------------------------------------------------------------------------

  function authorizationText(a) {
    const parts = [a.role, a.enabled ? "enabled" : "disabled", a.state];
    return `${a.appId}: ${parts.join(", ")}`;
  }

  function userRow(user, withOrgCode) {
    const authorizations = user.authorizations.length
      ? user.authorizations.map((a) =>
          el("span", {
            class: "org-auth" + (a.canSignIn ? "" : " org-auth-blocked"),
            title: a.canSignIn ? "can sign in" : "cannot sign in",
            "data-state": a.state,
            text: authorizationText(a),
          })
        )
      : [el("span", { class: "org-auth org-auth-blocked", text: "no authorisation" })];
    return el(
      "tr",
      { class: "org-user", "data-user-name": user.userName },
      el("td", {}, el("code", { text: user.userName })),
      el("td", { text: user.name }),
      withOrgCode ? el("td", {}, el("code", { text: user.orgCode || "(empty)" })) : null,
      el("td", { text: user.position }),
      el("td", {}, ...authorizations)
    );
  }

  function usersTable(withOrgCode) {
    const head = el(
      "tr",
      {},
      el("th", { text: "userName" }),
      el("th", { text: "name" }),
      withOrgCode ? el("th", { text: "orgCode (not synced)" }) : null,
      el("th", { text: "position" }),
      el("th", { text: "authorisations: role, enabled, state" })
    );
    return el("table", { class: "org-users-table" }, el("thead", {}, head), el("tbody"));
  }

  async function loadUsers(box, url, withOrgCode) {
    const page = await getJSON(url);
    let table = box.querySelector("table");
    if (!table) {
      table = usersTable(withOrgCode);
      box.append(table);
    }
    const body = table.querySelector("tbody");
    for (const user of page.results) body.append(userRow(user, withOrgCode));
    const old = box.querySelector(":scope > .org-more-users");
    if (old) old.remove();
    if (page.next) {
      const shown = body.children.length;
      box.append(
        el("button", {
          type: "button",
          class: "org-more-users",
          text: `More users (${shown} of ${page.count} shown)`,
          onclick: () => loadUsers(box, page.next, withOrgCode).catch(showError),
        })
      );
    }
  }

  async function showUsers(item) {
    const box = item.querySelector(":scope > .org-users");
    if (!box.dataset.loaded) {
      box.dataset.loaded = "1";
      const path = `/departments/${encodeURIComponent(item.dataset.orgCode)}/users`;
      await loadUsers(box, apiUrl(path, { limit: 100 }), false);
    }
    box.hidden = false;
  }

  async function toggleUsers(item) {
    const box = item.querySelector(":scope > .org-users");
    if (!box.hidden) box.hidden = true;
    else await showUsers(item);
  }

  function unassignedGroup(count) {
    const box = document.getElementById("org-unassigned");
    if (!count) return;
    const list = el("div", { class: "org-users", hidden: true });
    const button = el("button", {
      type: "button",
      id: "org-unassigned-toggle",
      text: `Show ${plural(count, "user")}`,
      onclick: async () => {
        if (!list.dataset.loaded) {
          list.dataset.loaded = "1";
          await loadUsers(list, apiUrl("/unassigned-users", { limit: 100 }), true).catch(
            showError
          );
        }
        list.hidden = !list.hidden;
        button.textContent = list.hidden ? `Show ${plural(count, "user")}` : "Hide";
      },
    });
    box.append(
      el(
        "div",
        { class: "org-row" },
        el("strong", { text: "Unassigned users" }),
        ` — ${plural(count, "user")} whose orgCode names no synced department `,
        button
      ),
      list
    );
    box.hidden = false;
  }

  // --- top level -------------------------------------------------------------------------------

  let rootsLoaded = 0;

  async function loadRoots() {
    treeRoot.setAttribute("aria-busy", "true");
    const data = await getJSON(
      apiUrl("/org-tree", { depth: 1, offset: rootsLoaded, limit: pageSize })
    );
    const old = treeRoot.querySelector(":scope > li.org-more");
    if (old) old.remove();
    // Few top-level departments (usually one head office): show their children straight
    // away. Orphans come after them and stay closed.
    const opened = rootsLoaded === 0 && data.nodes.filter((n) => !n.orphan).length <= 10;
    for (const node of data.nodes) {
      if (findChild(treeRoot, node.orgCode)) continue;
      const item = nodeElement(node);
      treeRoot.append(item);
      if (opened && !node.orphan && node.childCount) await expand(item);
    }
    rootsLoaded += data.nodes.length;
    if (data.nextOffset !== null) {
      const button = el("button", {
        type: "button",
        text: `Show more top-level departments (${rootsLoaded} of ${data.count} shown)`,
        onclick: () => loadRoots().catch(showError),
      });
      treeRoot.append(el("li", { class: "org-more" }, button));
    }
    document.getElementById("org-tree-empty").hidden = data.count > 0;
    treeRoot.setAttribute("aria-busy", "false");
  }

  // --- search ----------------------------------------------------------------------------------

  // Expand the tree down `steps` from `list`; a department outside the loaded page of its
  // siblings is fetched on its own and added, so a hit is always reachable.
  async function walkDown(list, steps) {
    let item = null;
    for (let i = 0; i < steps.length; i += 1) {
      item = findChild(list, steps[i].orgCode);
      if (!item) {
        const data = await getJSON(apiUrl("/org-tree", { root: steps[i].orgCode, depth: 0 }));
        item = nodeElement(data.nodes[0]);
        const more = list.querySelector(":scope > li.org-more, :scope > li.org-gap");
        list.insertBefore(item, more);
      }
      if (i < steps.length - 1) await expand(item);
      list = item.querySelector(":scope > ul.org-children");
    }
    return item;
  }

  function elidedText(path) {
    return path.exact ? `${path.elided} more` : `at least ${path.elided} more`;
  }

  // A path with steps left out: the known top is opened, then a placeholder stands for the
  // levels not shown and holds the branch of the last steps, down to the hit.
  async function revealGap(path) {
    let list = treeRoot;
    if (path.head.length) {
      const top = await walkDown(treeRoot, path.head);
      await expand(top);
      list = top.querySelector(":scope > ul.org-children");
    }
    const below = path.tail[0].orgCode;
    let gap = Array.from(list.querySelectorAll(":scope > li.org-gap")).find(
      (g) => g.dataset.below === below
    );
    if (!gap) {
      gap = el(
        "li",
        { class: "org-gap", "data-below": below },
        el("div", {
          class: "org-row org-gap-row",
          text: `… ${elidedText(path)} levels not shown (see the search result's path)`,
        }),
        el("ul", { class: "org-children", role: "group" })
      );
      list.prepend(gap);
    }
    const gapList = gap.querySelector(":scope > ul.org-children");
    indent(gapList);
    return walkDown(gapList, path.tail);
  }

  // A path with a few steps left out (an ordinary deep tree, not a chain): they are read in
  // one request and the whole path opened, the hit in its real place; else the gap, or null.
  const FILL_AT_ONCE = 50;
  async function wholePath(path) {
    if (!path.elided) return path.head;
    if (!path.exact || path.elided > FILL_AT_ONCE) return null;
    const first = encodeURIComponent(path.tail[0].orgCode);
    const data = await getJSON(apiUrl(`/departments/${first}/ancestors`, { limit: path.elided }));
    if (data.ancestors.length !== path.elided) return null; // the tree moved meanwhile
    return path.head.concat(data.ancestors, path.tail);
  }

  async function reveal(path) {
    const steps = await wholePath(path);
    const item = steps ? await walkDown(treeRoot, steps) : await revealGap(path);
    for (const old of document.querySelectorAll(".org-found")) old.classList.remove("org-found");
    if (item) {
      item.classList.add("org-found");
      item.scrollIntoView({ block: "center" });
    }
    return item;
  }

  // The path as text: head / … N more … / tail, the gap a button that reads the steps left
  // out, a bounded page at a time (the ancestors of the first step after the gap).
  function pathElement(path) {
    const box = el("span", { class: "org-path" });
    const names = (steps) => steps.map((step) => step.orgName).join(" / ");
    const render = () => {
      box.replaceChildren(" — ");
      if (!path.elided) {
        box.append(names(path.head.concat(path.tail)));
        return;
      }
      if (path.head.length) box.append(`${names(path.head)} / `);
      box.append(
        el("button", {
          type: "button",
          class: "org-elided",
          title: "show the departments left out",
          text: `… ${elidedText(path)} …`,
          onclick: () => fill().catch(showError),
        }),
        ` / ${names(path.tail)}`
      );
    };
    const fill = async () => {
      const limit = path.exact ? Math.min(path.elided, 50) : 50;
      const first = encodeURIComponent(path.tail[0].orgCode);
      const data = await getJSON(apiUrl(`/departments/${first}/ancestors`, { limit }));
      path.tail = data.ancestors.concat(path.tail);
      if (path.exact) path.elided -= data.ancestors.length;
      else if (data.more) path.elided = Math.max(path.elided - data.ancestors.length, 1);
      else path.elided = 0; // the top is reached
      if (path.elided <= 0) {
        path.head = path.head.concat(path.tail); // nothing left out: the whole path
        path.tail = [];
        path.elided = 0;
        path.exact = true;
      }
      render();
    };
    render();
    return box;
  }

  function searchResults(data) {
    const box = document.getElementById("org-search-results");
    box.replaceChildren();
    const departments = el("ul", { id: "org-search-departments" });
    for (const hit of data.departments) {
      departments.append(
        el(
          "li",
          { class: "org-hit" + (hit.orphan ? " org-orphan" : ""), "data-org-code": hit.orgCode },
          el("span", { class: "org-name", text: hit.orgName }),
          " ",
          el("code", { text: hit.orgCode }),
          pathElement(hit.path),
          " ",
          el("button", {
            type: "button",
            class: "org-reveal",
            text: "Show in tree",
            onclick: () => reveal(hit.path).catch(showError),
          })
        )
      );
    }
    const users = el("ul", { id: "org-search-users" });
    for (const hit of data.users) {
      const where = hit.department
        ? pathElement(hit.path)
        : el("span", {
            class: "org-path org-unassigned-sample",
            text: ` — unassigned (orgCode ${hit.orgCode || "empty"})`,
          });
      users.append(
        el(
          "li",
          { class: "org-hit", "data-user-name": hit.userName },
          el("span", { class: "org-user-name", text: hit.name || hit.userName }),
          " ",
          el("code", { text: hit.userName }),
          where,
          " ",
          hit.department
            ? el("button", {
                type: "button",
                class: "org-reveal",
                text: "Show in tree",
                onclick: () =>
                  reveal(hit.path)
                    .then((item) => item && showUsers(item))
                    .then(() => markUser(hit.userName))
                    .catch(showError),
              })
            : null
        )
      );
    }
    const more = (truncated) => (truncated ? " (first matches only: refine the search)" : "");
    box.append(
      el("h3", { text: `Departments: ${data.departments.length}${more(data.departmentsTruncated)}` }),
      data.departments.length ? departments : el("p", { text: "No department matches." }),
      el("h3", { text: `Users: ${data.users.length}${more(data.usersTruncated)}` }),
      data.users.length ? users : el("p", { text: "No user matches." })
    );
    box.hidden = false;
    document.getElementById("org-search-clear").hidden = false;
  }

  function markUser(userName) {
    for (const row of document.querySelectorAll("#org-tree tr.org-user")) {
      row.classList.toggle("org-found", row.dataset.userName === userName);
    }
  }

  document.getElementById("org-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = document.getElementById("org-search-input").value.trim();
    if (!text) return;
    errorBox.hidden = true;
    getJSON(apiUrl("/org-tree/search", { q: text }))
      .then(searchResults)
      .catch(showError);
  });
  document.getElementById("org-search-clear").addEventListener("click", (event) => {
    document.getElementById("org-search-results").hidden = true;
    document.getElementById("org-search-input").value = "";
    event.target.hidden = true;
  });

  unassignedGroup(Number(app.dataset.unassigned) || 0);
  loadRoots().catch(showError);
})();
