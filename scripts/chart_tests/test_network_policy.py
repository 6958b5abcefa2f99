"""networkPolicy: NodeLocal DNS, the Pushgateway, extra CIDRs (VPC endpoints, a proxy, Vault
outside the cluster), extra rules."""

from helmchart import example, of_kind, one, render


def egress(values=None):
    return one(render(values), "NetworkPolicy")["spec"]["egress"]


def ip_rules(rules):
    return {r["to"][0]["ipBlock"]["cidr"]: r for r in rules if "ipBlock" in r["to"][0]}


def test_default_egress():
    rules = egress()
    assert len(rules) == 3  # DNS, Vault, the provider APIs
    assert list(ip_rules(rules)) == ["0.0.0.0/0"]
    assert "169.254.0.0/16" in ip_rules(rules)["0.0.0.0/0"]["to"][0]["ipBlock"]["except"]


def test_node_local_dns():
    rules = ip_rules(egress({"networkPolicy": {"dns": {"nodeLocal": {"enabled": True}}}}))
    assert rules["169.254.20.10/32"]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_pushgateway():
    rules = egress({"networkPolicy": {"pushgateway": {"enabled": True}}})
    pg = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 9091}]]
    assert len(pg) == 1
    assert pg[0]["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus-pushgateway"}
    assert pg[0]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}


def test_extra_cidrs():
    rules = ip_rules(egress({"networkPolicy": {"extraCidrs": [
        {"cidr": "10.20.0.0/24", "ports": [{"port": 8200}], "description": "Vault"},
        {"cidr": "10.30.0.0/16", "except": ["10.30.9.0/24"], "ports": [{"port": 3128}, {"port": 53, "protocol": "UDP"}]},
    ]}}))
    assert rules["10.20.0.0/24"]["ports"] == [{"protocol": "TCP", "port": 8200}]
    assert rules["10.30.0.0/16"]["to"][0]["ipBlock"]["except"] == ["10.30.9.0/24"]
    assert rules["10.30.0.0/16"]["ports"] == [{"protocol": "TCP", "port": 3128}, {"protocol": "UDP", "port": 53}]


def test_extra_cidrs_need_ports():
    from helmchart import fails
    fails({"networkPolicy": {"extraCidrs": [{"cidr": "10.0.0.0/8"}]}}, "ports")


def test_vault_external_example():
    rules = egress(example("values-vault-external.yaml"))
    cidrs = ip_rules(rules)
    assert {"10.20.0.0/24", "10.30.0.10/32", "10.40.0.0/24", "169.254.20.10/32", "0.0.0.0/0"} == set(cidrs)
    assert not any("podSelector" in r["to"][0] and r["ports"][0]["port"] == 8200 for r in rules)


def test_extra_egress_kept():
    rules = egress({"networkPolicy": {"extraEgress": [{"to": [{"podSelector": {"matchLabels": {"app": "proxy"}}}],
                                                       "ports": [{"port": 3128}]}]}})
    assert rules[-1]["to"][0]["podSelector"]["matchLabels"] == {"app": "proxy"}


def test_disabled():
    assert of_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []
