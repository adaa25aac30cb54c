"""A model of the department tree that singleOrgSync and allOrgSync should leave, for property
tests (what the service stores is compared with it)."""



CODES = ["A", "B", "C", "D", "E", "F"]


PARENTS = ["", "Z", *CODES]  # "Z" is never synced: a parent that does not exist


class Model:
    """§2.6 in Python: departments by code; links and user assignment follow from them."""

    def __init__(self):
        self.departments: dict[str, tuple[str, str]] = {}  # code → (name, parent_code)

    @staticmethod
    def has_cycle(departments: dict[str, tuple[str, str]]) -> bool:
        for start in departments:
            seen, code = set(), start
            while code in departments and code not in seen:
                seen.add(code)
                code = departments[code][1]
            if code in seen:
                return True
        return False

    def upsert(self, code, name, parent) -> bool:
        if parent is None:
            parent = self.departments[code][1] if code in self.departments else ""
        after = {**self.departments, code: (name, parent)}
        if self.has_cycle(after):
            return False
        self.departments = after
        return True

    def delete(self, code) -> bool:
        self.departments.pop(code, None)
        return True

    def full(self, items) -> bool:
        after = {code: (name, parent) for code, name, parent in items}  # last wins
        if self.has_cycle(after):
            return False
        self.departments = after
        return True

    def tree(self) -> dict:
        return {
            code: (name, parent, parent if parent in self.departments else None)
            for code, (name, parent) in self.departments.items()
        }

    def users(self) -> dict:
        return {f"user-{c}": (c, c if c in self.departments else None) for c in CODES}
