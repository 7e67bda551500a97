/** `aria-invalid` and `aria-describedby` for a control shown by `Field`. */
export function invalid(id: string, error: string | undefined, hint = false) {
  return {
    "aria-invalid": error ? ("true" as const) : undefined,
    "aria-describedby": error ? `${id}-err` : hint ? `${id}-hint` : undefined,
  };
}
