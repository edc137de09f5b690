package dev.egressproxy.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import dev.egressproxy.policy.AllowlistEntry;
import dev.egressproxy.policy.AllowlistMode;
import dev.egressproxy.policy.CidrBlock;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tests for {@link ConfigLoader}: the layers (reference, shipped default, file, environment),
 * presets, {@code connect-to}, and one test per validation message. Each broken configuration
 * lives in {@code src/test/resources/config/}, one file per mistake, and every message must name
 * the key path, where it was set (file and line) and the bad value.
 */
class ConfigLoaderTest {

    private static final List<String> REDHAT_REGISTRY_HOSTS = List.of("registry.redhat.io", "registry.access.redhat.com",
            "cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io");

    @TempDir
    Path dir;

    // ---------------------------------------------------------------- layers and defaults

    @Test
    void shippedDefaultListensOn3128WithAdminOn9128AndTheRedHatRegistryPreset() throws Exception {
        ProxyConfig config = ConfigLoader.load(null, Map.of());

        assertThat(config.listen()).isEqualTo(new ProxyConfig.Listen("0.0.0.0", 3128));
        assertThat(config.admin()).isEqualTo(new ProxyConfig.Admin(true, "0.0.0.0", 9128, config.clients().allow(), List.of()));
        assertThat(config.allowlist().presets()).containsExactly("redhat-registry");
        assertThat(texts(config)).containsExactlyElementsOf(REDHAT_REGISTRY_HOSTS);
        assertThat(config.timeouts()).isEqualTo(
                new ProxyConfig.Timeouts(Duration.ofSeconds(10), Duration.ofSeconds(30), Duration.ofMinutes(5),
                        Duration.ofMillis(250)));
        assertThat(config.limits().maxRequestHead()).isEqualTo(32 * 1024);
        assertThat(config.relay()).isEqualTo(new ProxyConfig.Relay(true, 64 * 1024, 16 * 1024, 512 * 1024, 1));
        assertThat(config.logging().accessFormat()).isEqualTo(ProxyConfig.AccessLogFormat.TEXT);
        assertThat(config.tunnels()).isEqualTo(new ProxyConfig.Tunnels(ProxyConfig.SniCheckMode.REPORT, Set.of(443),
                Duration.ofSeconds(10)));
    }

    @Test
    void sniCheckSettingsAreRead() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  tunnels { sni-check = enforce, tls-ports = [443, 8443, 443], client-hello-timeout = 3s }
                }
                """);

        assertThat(config.tunnels().sniCheck()).isEqualTo(ProxyConfig.SniCheckMode.ENFORCE);
        assertThat(config.tunnels().tlsPorts()).containsExactlyInAnyOrder(443, 8443);
        assertThat(config.tunnels().clientHelloTimeout()).isEqualTo(Duration.ofSeconds(3));
        assertThat(config.tunnels().checks(8443)).isTrue();
        assertThat(config.tunnels().checks(80)).isFalse();
    }

    @Test
    void sniCheckOffChecksNoPortAndMayListNone() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  tunnels { sni-check = off, tls-ports = [] }
                }
                """);

        assertThat(config.tunnels().checks(443)).isFalse();
    }

    @Test
    void fileOverridesThePortAndKeepsTheOtherShippedDefaults() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.listen.port = 8888\n");

        ProxyConfig config = ConfigLoader.load(file, Map.of());

        assertThat(config.listen().port()).isEqualTo(8888);
        assertThat(config.admin().port()).isEqualTo(9128);
        assertThat(config.allowlist().presets()).containsExactly("redhat-registry");
    }

    @Test
    void environmentOverridesWinOverTheFile() throws Exception {
        Path file = write("egress-proxy.conf", """
                egress-proxy {
                  listen.port = 8888
                  allowlist { presets = ["quay-cdn"], hosts = ["file.example"] }
                }
                """);
        Map<String, String> env = Map.of(
                "EGRESS_PROXY_PORT", "9999",
                "EGRESS_PROXY_ALLOW_HOSTS", "a.example, *.b.example ,,mirror.example:5000",
                "EGRESS_PROXY_PRESETS", "redhat-registry");

        ProxyConfig config = ConfigLoader.load(file, env);

        assertThat(config.listen().port()).isEqualTo(9999);
        assertThat(config.allowlist().presets()).containsExactly("redhat-registry");
        assertThat(texts(config)).containsAll(REDHAT_REGISTRY_HOSTS)
                .contains("a.example", "*.b.example", "mirror.example:5000")
                .doesNotContain("file.example", "*.quay.io")
                .hasSize(REDHAT_REGISTRY_HOSTS.size() + 3);
    }

    @Test
    void blankEnvironmentVariableIsIgnored() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.listen.port = 8888\n");

        ProxyConfig config = ConfigLoader.load(file, Map.of("EGRESS_PROXY_PORT", "  ", "EGRESS_PROXY_ALLOW_HOSTS", ""));

        assertThat(config.listen().port()).isEqualTo(8888);
        assertThat(texts(config)).containsExactlyElementsOf(REDHAT_REGISTRY_HOSTS);
    }

    @Test
    void quayCdnPresetAllowsEveryQuayHostThroughAWildcard() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("egress-proxy.allowlist.presets = [quay-cdn]");

        assertThat(texts(config)).containsExactly("registry.redhat.io", "registry.access.redhat.com", "*.quay.io");
        // check hosts dials today's CDN hosts for the wildcard instead of skipping it.
        assertThat(config.check().samples()).containsExactly("cdn.quay.io", "cdn01.quay.io", "cdn02.quay.io",
                "cdn03.quay.io");
    }

    @Test
    void checkSamplesOfTheConfigComeFirstAndThoseOfPresetsAreAddedOnce() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.presets = [quay-cdn]
                  check.samples = ["cdn05.quay.io", "cdn01.quay.io"]
                }
                """);

        assertThat(config.check().samples()).containsExactly("cdn05.quay.io", "cdn01.quay.io", "cdn.quay.io",
                "cdn02.quay.io", "cdn03.quay.io");
    }

    @Test
    void aPresetsCheckSampleMustBeUnderOneOfItsWildcardEntries() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.allowlist.presets = [mirror]\n");
        write("presets/mirror.conf", """
                hosts = ["*.cdn.corp.example", "mirror.corp.example"]
                check-samples = ["eu.cdn.corp.example", "mirror.corp.example"]
                """);

        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(file, Map.of()));

        assertThat(e.problems()).singleElement().asString()
                .contains("egress-proxy.allowlist.presets.mirror.check-samples[1]")
                .contains("'mirror.corp.example' is under no wildcard entry of the allowlist");
    }

    @Test
    void presetAndHostNamingTheSameEntryAreMergedOnce() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy.allowlist { presets = [redhat-registry], hosts = ["Registry.RedHat.IO.", "extra.example"] }
                """);

        assertThat(texts(config)).containsExactly("registry.redhat.io", "registry.access.redhat.com", "cdn.quay.io",
                "cdn01.quay.io", "cdn02.quay.io", "cdn03.quay.io", "extra.example");
    }

    @Test
    void eachEntryKnowsThePresetItCameFromAndAnEntryBothNameCountsAsThePresets() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy.allowlist { presets = [redhat-registry, quay-cdn], hosts = ["registry.redhat.io", "extra.example"] }
                """);

        Map<String, String> from = new java.util.LinkedHashMap<>();
        config.allowlist().entries().forEach(e -> from.put(e.text(), String.valueOf(config.allowlist().presetOf(e))));
        assertThat(from).containsEntry("registry.redhat.io", "redhat-registry")
                .containsEntry("cdn02.quay.io", "redhat-registry")
                .containsEntry("*.quay.io", "quay-cdn")
                .containsEntry("extra.example", "null")
                .hasSize(8);
    }

    @Test
    void presetDirectoryNextToTheConfigFileIsUsed() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.allowlist.presets = [internal-mirror]\n");
        write("presets/internal-mirror.conf", """
                hosts = [
                  "mirror.corp.example:5000"   # the internal registry mirror
                  "*.cdn.corp.example"          # its blob storage
                ]
                """);

        ProxyConfig config = ConfigLoader.load(file, Map.of());

        assertThat(config.allowlist().presets()).containsExactly("internal-mirror");
        assertThat(texts(config)).containsExactly("mirror.corp.example:5000", "*.cdn.corp.example");
    }

    @Test
    void presetDirectoryTakesPrecedenceOverTheShippedPresetOfTheSameName() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.allowlist.presets = [redhat-registry]\n");
        write("presets/redhat-registry.conf", "hosts = [\"registry.redhat.io\"]\n");

        ProxyConfig config = ConfigLoader.load(file, Map.of());

        assertThat(texts(config)).containsExactly("registry.redhat.io");
    }

    @Test
    void connectToKeysAreNormalisedAuthoritiesAndValuesAreSocketAddresses() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  destinations.connect-to {
                    "Registry.RedHat.IO.:443" = "127.0.0.1:8443"
                    "[2001:DB8::1]:443" = "[::1]:9443"
                  }
                }
                """);

        assertThat(config.destinations().connectTo()).containsOnly(
                Map.entry("registry.redhat.io:443", new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 8443)),
                Map.entry("[2001:db8::1]:443", new InetSocketAddress(InetAddress.getByName("::1"), 9443)));
        assertThat(config.destinations().connectTo().get("registry.redhat.io:443").isUnresolved()).isFalse();
    }

    @Test
    void allowPrivateCidrsAreParsed() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  destinations.allow-private = ["10.0.0.0/8", "fd00::/8"]
                }
                """);

        assertThat(config.destinations().allowPrivate()).containsExactly(CidrBlock.parse("10.0.0.0/8"), CidrBlock.parse("fd00::/8"));
    }

    // ---------------------------------------------------------------- policies

    @Test
    void policiesAreReadInOrderWithTheirOwnAllowlistAndTheTopLevelModeByDefault() throws Exception {
        Path file = write("policies.conf", """
                egress-proxy.allowlist.mode = report
                egress-proxy.policies = [
                  { name = ci, clients = ["10.20.0.0/16"], users = ["ci-bot"],
                    allowlist { presets = ["quay-cdn"], hosts = ["github.com"] } }
                  { name = "mtls-builders", identities = ["spiffe://corp/builder"],
                    allowlist { hosts = ["cdn01.quay.io:443"], mode = enforce } }
                ]
                """);

        ProxyConfig config = ConfigLoader.load(file, Map.of());

        assertThat(config.policies()).extracting(ProxyConfig.Policy::name).containsExactly("ci", "mtls-builders");
        ProxyConfig.Policy ci = config.policies().get(0);
        assertThat(ci.clients()).extracting(Object::toString).containsExactly("10.20.0.0/16");
        assertThat(ci.users()).containsExactly("ci-bot");
        assertThat(ci.allowlist().presets()).containsExactly("quay-cdn");
        assertThat(ci.allowlist().entries()).extracting(AllowlistEntry::text).contains("*.quay.io", "github.com");
        assertThat(ci.allowlist().mode()).isEqualTo(dev.egressproxy.policy.AllowlistMode.REPORT);
        assertThat(config.policies().get(1).allowlist().mode()).isEqualTo(dev.egressproxy.policy.AllowlistMode.ENFORCE);
        assertThat(config.presetsInUse()).containsExactly("redhat-registry", "quay-cdn");
    }

    @Test
    void rejectsPoliciesThatSelectNoClientHaveNoHostsRepeatANameOrUseUnknownKeys() throws Exception {
        Path file = write("bad-policies.conf", """
                egress-proxy.policies = [
                  { name = a, allowlist { hosts = ["a.example"] } }
                  { name = empty, clients = [], users = [], allowlist { hosts = ["e.example"] } }
                  { name = b, clients = ["10.0.0.0/8"], allowlist { hosts = [] } }
                  { name = b, users = ["x"], allowlist { hosts = ["b.example"] }, color = red }
                  { name = default, users = ["y"], allowlist { hosts = ["c.example"], modes = report } }
                  { name = "bad name!", clients = ["10.0.0.0/33"], allowlist { hosts = ["d.example"] } }
                  "not-an-object"
                ]
                """);

        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(file, Map.of()));

        assertThat(e).isNotNull();
        assertThat(String.join("\n", e.problems()))
                .contains("egress-proxy.policies[0]", "selects no client")
                .contains("egress-proxy.policies[1] (", "selects no client")
                .contains("egress-proxy.policies[2].allowlist", "no hosts allowed")
                .contains("the name 'b' is taken by an earlier policy")
                .contains("unknown key 'color'")
                .contains("the name 'default' is taken by the top-level allowlist")
                .contains("unknown key 'modes'")
                .contains("'name' must be 1-63 letters")
                .contains("egress-proxy.policies[5].clients")
                .contains("egress-proxy.policies[6]", "expected an object");
    }

    // ---------------------------------------------------------------- one test per validation message

    @Test
    void rejectsWildcardWithoutDotAndSuggestsTheFix() throws Exception {
        assertSingleProblem("bad-pattern.conf", 4, "egress-proxy.allowlist.hosts[1]",
                "'*example.com' is not a valid pattern; use '*.example.com'");
    }

    @Test
    void rejectsUnknownKeyAndListsTheKnownKeys() throws Exception {
        assertSingleProblem("unknown-key.conf", 3, "egress-proxy.timeouts.conect",
                "unknown key; known keys there: connect, connect-attempt-delay, idle, request-head");
    }

    @Test
    void rejectsDurationThatIsNotADuration() throws Exception {
        assertSingleProblem("bad-duration.conf", 3, "egress-proxy.timeouts.connect",
                "'ten seconds' is not a duration such as 10s or 5m");
    }

    @Test
    void rejectsNegativeTimeout() throws Exception {
        assertSingleProblem("negative-timeout.conf", 3, "egress-proxy.timeouts.idle", "must be positive, got PT-5S");
    }

    @Test
    void rejectsZeroTimeout() throws Exception {
        assertSingleProblem("zero-timeout.conf", 3, "egress-proxy.timeouts.connect", "must be positive, got PT0S");
    }

    @Test
    void rejectsFastFailAfterZeroTimeouts() throws Exception {
        assertSingleProblem("fast-fail-zero-timeouts.conf", 3, "egress-proxy.upstream.fast-fail.timeouts",
                "0 is below the minimum 1");
    }

    @Test
    void rejectsAZeroFastFailCoolDown() throws Exception {
        assertSingleProblem("fast-fail-zero-cool-down.conf", 3, "egress-proxy.upstream.fast-fail.cool-down",
                "must be positive, got PT0S");
    }

    @Test
    void fastFailIsOnByDefault() throws Exception {
        ProxyConfig config = ConfigLoader.load(null, Map.of());

        assertThat(config.upstream().fastFail()).isEqualTo(
                new ProxyConfig.FastFail(true, 1, Duration.ofSeconds(60), Duration.ofSeconds(15)));
    }

    @Test
    void rejectsPortAbove65535() throws Exception {
        assertSingleProblem("port-out-of-range.conf", 3, "egress-proxy.listen.port",
                "70000 is not a port in 1-65535");
    }

    @Test
    void rejectsPortOfTheWrongType() throws Exception {
        assertSingleProblem("port-wrong-type.conf", 3, "egress-proxy.listen.port", "Wrong value type", "expecting: number");
    }

    @Test
    void rejectsRequestHeadLimitThatIsNotASize() throws Exception {
        assertSingleProblem("max-request-head-not-a-size.conf", 3, "egress-proxy.limits.max-request-head",
                "'lots' is not a size such as 32KiB");
    }

    @Test
    void rejectsNegativeSpliceThreshold() throws Exception {
        assertSingleProblem("splice-after-negative.conf", 3, "egress-proxy.relay.splice-after",
                "'-1' is not a size such as 32KiB");
    }

    @Test
    void rejectsASpliceMinimumReadNoReadCanReach() throws Exception {
        assertSingleProblem("splice-min-read-too-large.conf", 3, "egress-proxy.relay.splice-min-read",
                "131072 bytes is outside 0..65536");
    }

    @Test
    void rejectsUpstreamReadsPerEventOutsideOneTo64() throws Exception {
        assertSingleProblem("upstream-reads-zero.conf", 3, "egress-proxy.relay.upstream-reads-per-event",
                "0 is below the minimum 1");
        assertSingleProblem("upstream-reads-too-many.conf", 3, "egress-proxy.relay.upstream-reads-per-event",
                "65 is above the maximum 64");
    }

    @Test
    void rejectsUnknownPresetAndNamesTheShippedOnes() throws Exception {
        String problem = assertSingleProblem("unknown-preset.conf", 3, "egress-proxy.allowlist.presets",
                "unknown preset 'redhat-registri'; shipped presets: redhat-registry, quay-cdn");
        assertThat(problem).contains("also looked in " + resource("unknown-preset.conf").getParent().resolve("presets"));
    }

    @Test
    void rejectsEmptyAllowlist() throws Exception {
        ConfigException e = loadFailure("empty-allowlist.conf");

        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.allowlist")
                .contains("no hosts allowed (presets and hosts are both empty)")
                .contains("Name a preset such as \"redhat-registry\" or list hosts.");
    }

    @Test
    void rejectsConnectToValueThatIsAHostNameNotAnAddress() throws Exception {
        assertSingleProblem("connect-to-hostname.conf", 3, "egress-proxy.destinations.connect-to.\"registry.redhat.io:443\"",
                "'mirror.internal.example:8443' is not an IP address and port such as \"127.0.0.1:8443\"");
    }

    @Test
    void rejectsConnectToKeyWithoutPort() {
        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  destinations.connect-to { "registry.redhat.io" = "127.0.0.1:8443" }
                }
                """));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.destinations.connect-to.\"registry.redhat.io\" (config: 3)")
                .contains("key must be \"host:port\": the destination needs a port");
    }

    @Test
    void rejectsAllowPrivateCidrWithHostBits() throws Exception {
        assertSingleProblem("bad-allow-private-cidr.conf", 3, "egress-proxy.destinations.allow-private[1]",
                "'192.168.1.1/16' has host bits set; did you mean '192.168.0.0/16'?");
    }

    @Test
    void rejectsAdminClientsCidrWithHostBits() throws Exception {
        assertSingleProblem("bad-admin-clients-cidr.conf", 3, "egress-proxy.admin.clients.allow[1]",
                "'192.168.1.1/16' has host bits set; did you mean '192.168.0.0/16'?");
    }

    @Test
    void adminClientsAllowDefaultsToLoopbackAndPrivateRangesAndMayBeEmptied() throws Exception {
        ProxyConfig defaults = ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]");
        ProxyConfig empty = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  admin.clients.allow = []
                }
                """);

        assertThat(defaults.admin().clientsAllow()).extracting(CidrBlock::text).containsExactly(
                "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7");
        assertThat(empty.admin().clientsAllow()).isEmpty();
    }

    @Test
    void adminClientsAllowComesFromItsEnvironmentVariableAsAList() throws Exception {
        Path file = write("egress-proxy.conf", "egress-proxy.admin.clients.allow = [\"10.0.0.0/8\"]\n");

        ProxyConfig config = ConfigLoader.load(file, Map.of("EGRESS_PROXY_ADMIN_CLIENTS_ALLOW", "192.0.2.0/24, 127.0.0.1"));

        assertThat(config.admin().clientsAllow()).extracting(CidrBlock::text)
                .containsExactly("192.0.2.0/24", "127.0.0.1/32");
    }

    @Test
    void adminHostsAreNamesWildcardsOrAStarInLowerCaseWithoutTheTrailingDot() throws Exception {
        ProxyConfig config = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  admin.hosts = ["Metrics.Example.Internal.", "*.scrape.example.internal", "*", "prom_1"]
                }
                """);
        assertThat(config.admin().hosts())
                .containsExactly("metrics.example.internal", "*.scrape.example.internal", "*", "prom_1");
        assertThat(ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]").admin().hosts()).isEmpty();
        assertThat(ConfigLoader.load(write("egress-proxy.conf", "egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]\n"),
                Map.of("EGRESS_PROXY_ADMIN_HOSTS", "a.example, *.b.example")).admin().hosts())
                .containsExactly("a.example", "*.b.example");

        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  admin.hosts = ["ok.example", "evil example", "http://x.example", "*.", "a..b", 42, "", "*x.example"]
                }
                """));
        assertThat(e.problems()).hasSize(7).allSatisfy(p -> assertThat(p)
                .startsWith("egress-proxy.admin.hosts[").contains("expected a host name such as"));
    }

    @Test
    void proxyProtocolIsOffByDefaultAndReadWithItsPeers() throws Exception {
        ProxyConfig defaults = ConfigLoader.fromString("egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]");
        ProxyConfig on = ConfigLoader.fromString("""
                egress-proxy {
                  allowlist.hosts = ["registry.redhat.io"]
                  listen { proxy-protocol = "any", proxy-protocol-from = ["10.0.0.0/24", "10.1.0.7"] }
                }
                """);

        assertThat(defaults.listen().proxyProtocol()).isEqualTo(ProxyConfig.ProxyProtocol.OFF);
        assertThat(on.listen().proxyProtocol().mode()).isEqualTo(ProxyConfig.ProxyProtocolMode.ANY);
        assertThat(on.listen().proxyProtocol().from()).extracting(CidrBlock::text)
                .containsExactly("10.0.0.0/24", "10.1.0.7/32");
        assertThat(ProxyConfig.ProxyProtocolMode.ANY.accepts(1)).isTrue();
        assertThat(ProxyConfig.ProxyProtocolMode.ANY.accepts(2)).isTrue();
        assertThat(ProxyConfig.ProxyProtocolMode.V2.accepts(1)).isFalse();
        assertThat(ProxyConfig.ProxyProtocolMode.V1.accepts(2)).isFalse();
    }

    @Test
    void rejectsProxyProtocolWithoutPeersThatMaySendIt() throws Exception {
        assertSingleProblem("proxy-protocol-without-from.conf", 3, "egress-proxy.listen.proxy-protocol-from",
                "empty while listen.proxy-protocol = v2, which would refuse every connection;",
                "list the addresses of the load balancers that send the header");
    }

    @Test
    void rejectsUnknownProxyProtocolVersion() throws Exception {
        assertSingleProblem("proxy-protocol-unknown-version.conf", 3, "egress-proxy.listen.proxy-protocol",
                "'v3' is not one of off, v1, v2, any");
    }

    @Test
    void rejectsUnknownAccessLogFormat() throws Exception {
        assertSingleProblem("access-format-xml.conf", 3, "egress-proxy.logging.access-format",
                "'xml' is not one of text, json, squid");
    }

    @Test
    void rejectsUnknownSniCheckMode() throws Exception {
        assertSingleProblem("sni-check-unknown-mode.conf", 3, "egress-proxy.tunnels.sni-check",
                "'block' is not one of off, report, enforce");
    }

    @Test
    void rejectsATlsPortOutOfRange() throws Exception {
        assertSingleProblem("tls-ports-out-of-range.conf", 3, "egress-proxy.tunnels.tls-ports[1]",
                "'70000' is not a port in 1-65535");
    }

    @Test
    void rejectsAnSniCheckForNoPort() throws Exception {
        assertSingleProblem("tls-ports-empty.conf", 3, "egress-proxy.tunnels.tls-ports",
                "empty, so sni-check = enforce would check no tunnel; list the TLS ports (443) or set sni-check = off");
    }

    @Test
    void rejectsAZeroClientHelloTimeout() throws Exception {
        assertSingleProblem("client-hello-timeout-zero.conf", 3, "egress-proxy.tunnels.client-hello-timeout",
                "must be positive, got PT0S");
    }

    @Test
    void rejectsAdminPortEqualToListenPort() throws Exception {
        ConfigException e = loadFailure("admin-port-clash.conf");

        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.admin.port (").contains("admin-port-clash.conf:")
                .endsWith("): 8080 is also the proxy port (egress-proxy.listen.port); give the admin listener its own port");
    }
    @Test
    void everyProblemNamesTheFileAndLineThatSetTheValue() throws Exception {
        assertThat(loadFailure("empty-allowlist.conf").problems()).singleElement().asString().contains("empty-allowlist.conf:");
        assertThat(loadFailure("admin-port-clash.conf").problems()).singleElement().asString().contains("admin-port-clash.conf:4");
    }

    @Test
    void reportsSeveralProblemsTogether() throws Exception {
        ConfigException e = loadFailure("several-problems.conf");

        assertThat(e.problems()).hasSize(4)
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.listen.port").contains("several-problems.conf:3")
                        .contains("70000"))
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.timeouts.conect").contains("several-problems.conf:4"))
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.allowlist.hosts[0]").contains("several-problems.conf:5")
                        .contains("'*example.com'"))
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.logging.access-format")
                        .contains("several-problems.conf:6").contains("'xml'"));
        assertThat(e.getMessage()).startsWith("invalid configuration (4 problems):");
    }
    @Test
    void reportsBadTransportTogetherWithOtherProblems() throws Exception {
        ConfigException e = loadFailure("bad-transport-with-other-problem.conf");

        assertThat(e.problems()).hasSize(2)
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.transport")
                        .contains("bad-transport-with-other-problem.conf:3").contains("'carrier-pigeon'"))
                .anySatisfy(p -> assertThat(p).startsWith("egress-proxy.logging.access-format"));
    }

    @Test
    void rejectsBadEnvironmentValueAndNamesTheVariable() {
        ConfigException e = catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.load(null, Map.of("EGRESS_PROXY_PORT", "http")));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .isEqualTo("egress-proxy.listen.port (environment variable EGRESS_PROXY_PORT): 'http' is not a port number");
    }

    @Test
    void allowlistModeDefaultsToEnforceAndIsSetByFileOrEnvironment() throws Exception {
        assertThat(ConfigLoader.load(null, Map.of()).allowlist().mode()).isEqualTo(AllowlistMode.ENFORCE);
        Path file = write("egress-proxy.conf", "egress-proxy.allowlist.mode = report\n");
        assertThat(ConfigLoader.load(file, Map.of()).allowlist().mode()).isEqualTo(AllowlistMode.REPORT);
        assertThat(ConfigLoader.load(file, Map.of("EGRESS_PROXY_ALLOWLIST_MODE", " enforce ")).allowlist().mode())
                .isEqualTo(AllowlistMode.ENFORCE);
        assertThat(ConfigLoader.load(null, Map.of("EGRESS_PROXY_ALLOWLIST_MODE", "report")).allowlist().mode())
                .isEqualTo(AllowlistMode.REPORT);
    }

    @Test
    void rejectsUnknownAllowlistModeAndNamesTheVariable() {
        ConfigException e = catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.load(null, Map.of("EGRESS_PROXY_ALLOWLIST_MODE", "learn")));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .isEqualTo("egress-proxy.allowlist.mode (environment variable EGRESS_PROXY_ALLOWLIST_MODE): 'learn' is not "
                        + "one of enforce, report");
    }

    @Test
    void rejectsBadPatternFromTheEnvironmentAndNamesTheVariable() {
        ConfigException e = catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.load(null, Map.of("EGRESS_PROXY_ALLOW_HOSTS", "registry.redhat.io,*example.com")));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString()
                .startsWith("egress-proxy.allowlist.hosts[1] (environment variable EGRESS_PROXY_ALLOW_HOSTS")
                .endsWith("'*example.com' is not a valid pattern; use '*.example.com'");
    }

    @Test
    void rejectsMissingConfigFile() {
        Path missing = dir.resolve("nope.conf");

        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(missing, Map.of()));

        assertThat(e).isNotNull();
        assertThat(e.problems()).singleElement().asString().contains(missing.toString()).contains("does not exist");
    }

    @Test
    void rejectsHoconSyntaxErrorWithFileAndLine() throws Exception {
        ConfigException e = loadFailure("syntax-error.conf");

        assertThat(e.problems()).singleElement().asString().contains("syntax-error.conf");
    }

    // ---------------------------------------------------------------- helpers

    private static List<String> texts(ProxyConfig config) {
        return config.allowlist().entries().stream().map(AllowlistEntry::text).toList();
    }

    private Path write(String relative, String content) throws IOException {
        Path file = dir.resolve(relative);
        Files.createDirectories(file.getParent());
        return Files.writeString(file, content);
    }

    private static Path resource(String name) throws URISyntaxException {
        URL url = ConfigLoaderTest.class.getResource("/config/" + name);
        assertThat(url).as("test resource config/%s", name).isNotNull();
        return Path.of(url.toURI());
    }

    private static ConfigException loadFailure(String name) throws URISyntaxException {
        Path file = resource(name);
        ConfigException e = catchThrowableOfType(ConfigException.class, () -> ConfigLoader.load(file, Map.of()));
        assertThat(e).as("%s should be rejected", name).isNotNull();
        return e;
    }

    /**
     * Loads a broken file and checks that it yields exactly one problem, which names the key path,
     * the file and line, and says what is wrong with the value.
     */
    private static String assertSingleProblem(String name, int line, String keyPath, String... fragments)
            throws URISyntaxException {
        ConfigException e = loadFailure(name);
        assertThat(e.problems()).hasSize(1);
        String problem = e.problems().get(0);
        assertThat(problem).startsWith(keyPath + " (").contains(name + ":" + line).contains(fragments);
        assertThat(e.getMessage()).startsWith("invalid configuration (1 problem):").contains(problem);
        return problem;
    }

    // ---------------------------------------------------------------- upstream-proxy

    private static final String ALLOW = "egress-proxy.allowlist.hosts = [\"registry.redhat.io\"]\n";

    private static List<String> upstreamProxyProblems(String block) {
        return catchThrowableOfType(ConfigException.class,
                () -> ConfigLoader.fromString(ALLOW + "egress-proxy.upstream-proxy " + block)).problems();
    }

    @Test
    void upstreamProxyIsOffByDefault() throws Exception {
        assertThat(ConfigLoader.fromString(ALLOW).upstreamProxy().enabled()).isFalse();
    }

    @Test
    void upstreamProxyRoutesHostsButNotBypassAndReadsThePasswordFile(@TempDir Path dir) throws Exception {
        Path pw = Files.writeString(dir.resolve("pw"), "s3cret\nignored\n");
        ProxyConfig.UpstreamProxy parent = ConfigLoader.fromString(ALLOW + """
                egress-proxy.upstream-proxy {
                  url = "http://Corp-Proxy.example:8080/"
                  user = "egress"
                  password-file = "%s"
                  bypass = ["*.internal.example", "10.0.0.0/8"]
                }
                """.formatted(pw)).upstreamProxy();
        assertThat(parent.address().authority()).isEqualTo("corp-proxy.example:8080");
        assertThat(parent.proxyAuthorization()).isEqualTo("Basic ZWdyZXNzOnMzY3JldA==");
        assertThat(parent.toString()).doesNotContain("s3cret");
        assertThat(parent.routes(new dev.egressproxy.policy.Target("cdn02.quay.io", 443, null))).isTrue();
        // A pattern without a port matches every port.
        assertThat(parent.routes(new dev.egressproxy.policy.Target("git.internal.example", 8443, null))).isFalse();
        assertThat(parent.routes(new dev.egressproxy.policy.Target("10.1.2.3", 80, InetAddress.getByName("10.1.2.3"))))
                .isFalse();
    }

    @Test
    void upstreamProxyHostsNarrowWhatGoesThroughTheParent() throws Exception {
        ProxyConfig.UpstreamProxy parent = ConfigLoader.fromString(ALLOW + """
                egress-proxy.upstream-proxy { url = "http://corp:3128", hosts = ["*.quay.io"] }
                """).upstreamProxy();
        assertThat(parent.proxyAuthorization()).isNull();
        assertThat(parent.routes(new dev.egressproxy.policy.Target("cdn02.quay.io", 443, null))).isTrue();
        assertThat(parent.routes(new dev.egressproxy.policy.Target("registry.redhat.io", 443, null))).isFalse();
    }

    @Test
    void upstreamProxyUrlMistakesAreNamed() {
        assertThat(upstreamProxyProblems("{ url = \"https://corp:8080\" }")).singleElement().asString()
                .contains("egress-proxy.upstream-proxy.url").contains("is not an http:// URL");
        assertThat(upstreamProxyProblems("{ url = \"http://corp\" }")).singleElement().asString()
                .contains("has no port");
        assertThat(upstreamProxyProblems("{ url = \"http://u:p@corp:8080\" }")).singleElement().asString()
                .contains("put no credentials in the URL");
        assertThat(upstreamProxyProblems("{ url = \"http://10.0.0.5:8080\" }")).singleElement().asString()
                .contains("destinations.allow-private").contains("10.0.0.5/32");
    }

    @Test
    void upstreamProxyUserAndPasswordFileGoTogether(@TempDir Path dir) {
        assertThat(upstreamProxyProblems("{ url = \"http://corp:8080\", user = \"egress\" }")).singleElement()
                .asString().contains("egress-proxy.upstream-proxy.user").contains("give both or neither");
        assertThat(upstreamProxyProblems("{ url = \"http://corp:8080\", user = egress, password-file = \""
                + dir.resolve("missing") + "\" }")).singleElement().asString().contains("cannot read");
    }

    @Test
    void upstreamProxyPatternsUseTheAllowlistParser() {
        assertThat(upstreamProxyProblems("{ url = \"http://corp:8080\", bypass = [\"*example.com\"] }"))
                .singleElement().asString().startsWith("egress-proxy.upstream-proxy.bypass[0] (")
                .contains("use '*.example.com'");
        assertThat(upstreamProxyProblems("{ url = \"http://corp:8080\", hosts = [] }")).singleElement().asString()
                .contains("no destination would go through the parent");
    }
}
