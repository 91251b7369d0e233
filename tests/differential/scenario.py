"""Random supervision scenarios from a seed: the one source of both players'
input (format: docs/differential.md, "Scenarios")."""
import random

STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one"]
RESTARTS = ["permanent", "transient", "temporary"]
CRASHES = ["normal", "shutdown", "shutdown_tag", "error", "exception", "kill"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.seed = seed
        self.n = 0
        self.nodes = []  # lines, in depth-first order
        self.workers = []  # every worker name ever declared
        self.parent = {}  # worker name -> its (regular) supervisor
        self.sups = {}  # name -> {"kind", "children": [ids], "leaf": bool}
        self.dyn_instances = {}  # dyn name -> [instance names]
        # One scenario in 25 tries a significant child under auto_shutdown never.
        self.allow_bad_significant = self.r.random() < 0.04

    def name(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def plan(self):
        r = self.r
        if r.random() < 0.6:
            return "-"
        steps = []
        for i in range(r.randint(1, 4)):
            first = i == 0
            steps.append(r.choices(["ok", "ignore", "fail"], [36, 2, 1] if first else [3, 1, 2])[0])
        return ",".join(steps)

    def child_common(self, parent_auto, is_sup):
        r = self.r
        restart = r.choice(RESTARTS)
        if is_sup:
            shutdown = r.choice(["infinity", "infinity", "5000"])
        else:
            shutdown = r.choice(["brutal_kill", "1000", "infinity"])
        significant = "false"
        if restart != "permanent" and r.random() < 0.3:
            if parent_auto != "never" or self.allow_bad_significant:
                significant = "true"
        return restart, shutdown, significant

    def flags(self):
        r = self.r
        return r.choice([0, 1, 1, 2, 3, 5]), r.randint(1, 10)

    def sup(self, name, parent, depth, common):
        r = self.r
        strategy = r.choice(STRATEGIES)
        intensity, period = self.flags()
        auto = r.choices(["never", "any_significant", "all_significant"], [6, 2, 2])[0]
        tail = " ".join(common) if common else "permanent infinity false"
        self.nodes.append(f"sup {name} {parent} {strategy} {intensity} {period} {auto} {tail}")
        info = {"kind": "sup", "children": [], "leaf": True}
        self.sups[name] = info
        for _ in range(r.randint(1, 4)):
            kind = "worker"
            if depth < 3:
                kind = r.choices(["worker", "sup", "dyn"], [6, 2, 2])[0]
            if kind == "worker":
                w = self.name("w")
                restart, shutdown, sig = self.child_common(auto, False)
                self.nodes.append(f"worker {w} {name} {restart} {shutdown} {sig} {self.plan()}")
                self.workers.append(w)
                self.parent[w] = name
                info["children"].append(w)
            elif kind == "sup":
                s = self.name("s")
                info["leaf"] = False
                info["children"].append(s)
                self.sup(s, name, depth + 1, self.child_common(auto, True))
            else:
                d = self.name("d")
                info["leaf"] = False
                info["children"].append(d)
                self.dyn(d, name, self.child_common(auto, True))

    def dyn(self, name, parent, common):
        r = self.r
        intensity, period = self.flags()
        auto = r.choices(["never", "any_significant", "all_significant"], [6, 2, 2])[0]
        trestart = r.choice(RESTARTS)
        tshutdown = r.choice(["brutal_kill", "1000"])
        tsig = "false"
        if trestart != "permanent" and r.random() < 0.4 and (auto != "never" or self.allow_bad_significant):
            tsig = "true"
        self.nodes.append(f"dyn {name} {parent} {intensity} {period} {auto} {' '.join(common)} "
                          f"{trestart} {tshutdown} {tsig} {self.plan()}")
        self.sups[name] = {"kind": "dyn", "children": [], "leaf": True}
        self.dyn_instances[name] = []

    def action(self):
        r = self.r
        regular = [s for s, i in self.sups.items() if i["kind"] == "sup"]
        dyns = [s for s, i in self.sups.items() if i["kind"] == "dyn"]
        choices = ["crash"] * 6 + ["exitsup"] + ["terminate_child", "restart_child", "delete_child"] * 2 \
            + ["start_child", "start_child", "which", "count"]
        if dyns:
            choices += ["dstart"] * 4 + ["dterminate"] * 2
        if self.parent:
            choices += ["racecall"] * 3
        what = r.choice(choices)
        if what == "racecall":
            w = r.choice(sorted(self.parent))
            op = r.choice(["which", "count", "restart_child", "delete_child", "terminate_child"])
            if op in ("which", "count"):
                return f"racecall {w} {op}"
            return f"racecall {w} {op} {w if r.random() < 0.8 else r.choice(self.sups[self.parent[w]]['children'])}"
        if what == "crash":
            pool = self.workers + [i for l in self.dyn_instances.values() for i in l]
            return f"crash {r.choice(pool)} {r.choice(CRASHES)}" if pool else "which s0"
        if what == "exitsup":
            subs = [s for s in self.sups if s != "s0"]
            if not subs:
                return "count s0"
            s = r.choice(subs)
            # kill only where the orphans are workers (see docs/differential.md)
            why = r.choice(["kill", "kill", "shutdown", "error"]) if self.sups[s]["leaf"] else r.choice(["shutdown", "error"])
            return f"exitsup {s} {why}"
        if what in ("terminate_child", "restart_child", "delete_child"):
            s = r.choice(regular + dyns)
            ids = self.sups[s]["children"] + ["nx"] if s in regular else [s + "_t", "nx"]
            return f"{what} {s} {r.choice(ids)}"
        if what == "start_child":
            s = r.choice(regular)
            info = self.sups[s]
            if info["children"] and r.random() < 0.3:
                w = r.choice(info["children"])  # a duplicate id
            else:
                w = self.name("w")
                info["children"].append(w)
            if w not in self.workers and w not in self.sups:
                self.workers.append(w)
                self.parent[w] = s
            restart, shutdown, sig = self.child_common("any_significant", False)
            return f"start_child {s} {w} {restart} {shutdown} {sig} {self.plan()}"
        if what == "which" or what == "count":
            return f"{what} {r.choice(list(self.sups))}"
        d = r.choice(dyns)
        if what == "dstart":
            inst = f"{d}_{len(self.dyn_instances[d]) + 1}"
            self.dyn_instances[d].append(inst)
            return f"dstart {d} {inst}"
        insts = self.dyn_instances[d]
        return f"dterminate {d} {r.choice(insts)}" if insts else f"which {d}"


def generate(seed):
    g = Gen(seed)
    g.sup("s0", "-", 1, None)
    actions = [g.action() for _ in range(g.r.randint(3, 12))] + ["stop"]
    return "\n".join([f"scenario {seed}"] + g.nodes + [f"action {a}" for a in actions] + ["end"]) + "\n"


if __name__ == "__main__":
    import sys
    for s in range(int(sys.argv[1]), int(sys.argv[2])):
        sys.stdout.write(generate(s))
