// Hash routing (`#/finance`, `#/explorer/tx/ID`): every page is a bookmark,
// and the node serves one `index.html` for all of them.

class Router {
  path = $state(current());

  constructor() {
    if (typeof window !== "undefined") {
      window.addEventListener("hashchange", () => (this.path = current()));
    }
  }

  /** The first segment: which page. */
  get page(): string {
    return this.path.split("/")[1] ?? "";
  }

  /** The segments after the page's. */
  get rest(): string[] {
    return this.path.split("/").slice(2).map(decodeURIComponent);
  }

  go(path: string) {
    window.location.hash = path;
  }
}

function current(): string {
  if (typeof window === "undefined") return "/";
  const h = window.location.hash.replace(/^#/, "");
  return h.startsWith("/") ? h : "/";
}

export const router = new Router();

/** A link target for `href`. */
export const link = (...parts: string[]) => "#/" + parts.map(encodeURIComponent).join("/");
