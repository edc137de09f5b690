package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.metrics.DeniedReport;
import dev.egressproxy.testing.Processes;
import dev.egressproxy.testing.RawClient;
import dev.egressproxy.testing.Required;
import dev.egressproxy.testing.TcpServer;
import dev.egressproxy.testing.TestProxy;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.openqa.selenium.By;
import org.openqa.selenium.JavascriptExecutor;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.TakesScreenshot;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.support.ui.WebDriverWait;

/**
 * The status page on the admin port in a real browser: Debian's headless Chromium, driven by
 * Selenium through Debian's chromedriver (both installed by scripts/install-test-deps.sh). The page
 * loads, a refusal and an upstream failure caused through the proxy appear in its tables within a
 * refresh, the copy box offers the allowlist entry to add, and a destination and client that carry
 * markup (which the proxy's parser never lets through, so they are put in the real gap report
 * directly) show as literal text, with no element made and no script run. A screenshot is saved as
 * {@code target/status-page.png} for a person to look at.
 *
 * <p>Skipped, saying why, where Chromium or chromedriver is not installed.
 */
class StatusPageIT {

    private static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    private static final Path CHROMEDRIVER = Path.of("/usr/bin/chromedriver");
    private static final String HOSTILE_HOST = "<img src=x onerror=\"window.pwned=1\">";
    private static final String HOSTILE_CLIENT = "<script>window.pwned=2</script>";

    private static int connect(TestProxy proxy, String authority) throws Exception {
        try (RawClient raw = new RawClient(proxy.address())) {
            raw.socket.setSoTimeout(10_000);
            raw.send("CONNECT " + authority + " HTTP/1.1\r\n\r\n");
            return raw.readHead().status();
        }
    }

    private static Path screenshotFile(String name) {
        String jar = System.getProperty("egress.proxy.jar");
        Path target = jar == null ? Path.of("target") : Path.of(jar).getParent();
        return target.resolve(name);
    }

    /** A screenshot of the page as it is now, under target/, for a person to look at. */
    private static void screenshot(WebDriver driver, String name) throws Exception {
        Path png = screenshotFile(name);
        Files.createDirectories(png.getParent());
        Files.copy(((TakesScreenshot) driver).getScreenshotAs(OutputType.FILE).toPath(), png,
                StandardCopyOption.REPLACE_EXISTING);
        assertThat(png).isNotEmptyFile();
    }

    interface BrowserTest {
        void run(WebDriver driver, WebDriverWait wait) throws Exception;
    }

    /**
     * Runs {@code test} with headless Chromium, given {@code arguments} besides the usual ones;
     * skipped, saying why, where it is not installed.
     */
    private static void withBrowser(BrowserTest test, String... arguments) throws Exception {
        Required.program(Files.isExecutable(CHROMIUM) && Files.isExecutable(CHROMEDRIVER),
                "StatusPageIT needs Debian's chromium and chromium-driver (" + CHROMIUM + ", " + CHROMEDRIVER
                        + "), which scripts/install-test-deps.sh installs; they are absent here, so the browser test is skipped");
        ChromeDriverService service = new ChromeDriverService.Builder()
                .usingDriverExecutable(CHROMEDRIVER.toFile())
                .usingAnyFreePort()
                .build();
        ChromeOptions options = new ChromeOptions();
        options.setBinary(CHROMIUM.toFile());
        options.addArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                "--no-first-run", "--disable-extensions");
        options.addArguments(arguments);
        WebDriver driver = new ChromeDriver(service, options);
        try {
            test.run(driver, new WebDriverWait(driver, Duration.ofSeconds(30)));
        } finally {
            driver.quit();
            service.stop();
        }
    }

    private static List<String> column(WebDriver driver, String table, int column) {
        return driver.findElements(By.cssSelector("#" + table + " tbody tr td:nth-child(" + column + ")")).stream()
                .map(WebElement::getText).toList();
    }

    @Test
    void pageShowsRefusalsAndUnreachableHostsAsTextAndOffersTheEntriesToAdd() throws Exception {
        withBrowser(this::refusalsAndUnreachableHosts);
    }

    private void refusalsAndUnreachableHosts(WebDriver driver, WebDriverWait wait) throws Exception {
        int closed = Processes.freePort();
        try (TcpServer echo = TcpServer.echo();
                TestProxy proxy = TestProxy.start("""
                        allowlist { presets = ["quay-cdn"], hosts = ["echo.test:7000", "gone.test:7001"] }
                        destinations.connect-to {
                          "echo.test:7000" = "127.0.0.1:%d"
                          "gone.test:7001" = "127.0.0.1:%d"
                        }
                        """.formatted(echo.port(), closed));
                RawClient tunnel = new RawClient(proxy.address())) {
            driver.get(proxy.adminUrl("/"));
            wait.until(d -> "true".equals(d.findElement(By.tagName("body")).getDomAttribute("data-loaded")));
            assertThat(driver.getTitle()).isEqualTo("egress-proxy status");
            assertThat(driver.findElement(By.id("health")).getText()).isEqualTo("ready");
            assertThat(driver.findElement(By.id("version")).getText()).isNotBlank();
            assertThat(driver.findElement(By.id("uptime")).getText()).matches("\\d+ s|\\d+ min \\d+ s");
            assertThat(driver.findElement(By.id("config-file")).getText()).isNotBlank();
            assertThat(driver.findElement(By.id("reload")).getText()).isEqualTo("not reloaded since the start");
            assertThat(driver.findElement(By.id("denied-empty")).isDisplayed()).isTrue();
            assertThat(driver.findElement(By.id("copy")).isEnabled()).as("nothing to copy yet").isFalse();
            assertThat(column(driver, "allowlist", 1)).containsExactly("registry.redhat.io",
                    "registry.access.redhat.com", "*.quay.io", "echo.test:7000", "gone.test:7001");

            tunnel.socket.setSoTimeout(10_000);
            tunnel.send("CONNECT echo.test:7000 HTTP/1.1\r\n\r\n");
            assertThat(tunnel.readHead().status()).isEqualTo(200);
            assertThat(connect(proxy, "cdn99.example.net:443")).isEqualTo(403);
            assertThat(connect(proxy, "gone.test:7001")).isEqualTo(502);
            proxy.server.deniedReport().record(DeniedReport.Type.DENIED, HOSTILE_HOST + ":443",
                    "host_not_allowlisted", HOSTILE_CLIENT);
            // A refused reload's message quotes the offending value from the file.
            String reloadError = "egress-proxy.allowlist.hosts[0]: '<b>*bad.test</b>' is not a valid pattern";
            proxy.server.status().reloadRefused("SIGHUP", reloadError);

            // The page refreshes itself: no reload here.
            wait.until(d -> column(d, "denied", 1).size() == 2 && column(d, "unreachable", 1).size() == 1);
            assertThat(column(driver, "denied", 1)).containsExactlyInAnyOrder("cdn99.example.net:443", HOSTILE_HOST + ":443");
            assertThat(column(driver, "denied", 2)).containsOnly("denied");
            assertThat(column(driver, "denied", 3)).containsOnly("host_not_allowlisted");
            assertThat(column(driver, "denied", 4)).containsExactlyInAnyOrder("default", "");
            assertThat(column(driver, "denied", 8)).contains(HOSTILE_CLIENT);
            assertThat(column(driver, "unreachable", 1)).containsExactly("gone.test:7001");
            assertThat(column(driver, "unreachable", 2)).containsExactly("refused");
            wait.until(d -> d.findElement(By.id("tunnels")).getText().equals("1 tunnel open"));
            assertThat(driver.findElement(By.id("reload")).getText())
                    .startsWith("last reload (SIGHUP) ").endsWith(": REFUSED, the previous configuration stays in force");
            assertThat(driver.findElement(By.id("reload-error")).getText()).isEqualTo(reloadError);

            // Markup from the report is text: no element was made from it, no script ran.
            assertThat(driver.findElements(By.cssSelector("main img, main script, main b"))).isEmpty();
            JavascriptExecutor js = (JavascriptExecutor) driver;
            assertThat(js.executeScript("return typeof window.pwned")).isEqualTo("undefined");

            WebElement box = driver.findElement(By.id("suggested"));
            // A refusal /denied names an allowlist entry for is offered as that entry (port 443
            // is an entry's default); the injected one without an entry as its host:port.
            assertThat(box.getDomProperty("value")).isEqualTo(
                    "\"<img src=x onerror=\\\"window.pwned=1\\\">:443\"\n\"cdn99.example.net\"");
            assertThat(driver.findElement(By.id("fast-fail-empty")).isDisplayed()).isTrue();
            assertThat(driver.findElement(By.id("report-mode")).isDisplayed()).isFalse();
            assertThat(driver.findElement(By.id("policies-part")).isDisplayed()).isFalse();
            WebElement copy = driver.findElement(By.id("copy"));
            assertThat(copy.isEnabled()).isTrue();
            copy.click();
            wait.until(d -> !d.findElement(By.id("copy-result")).getText().isEmpty());
            assertThat(driver.findElement(By.id("copy-result")).getText()).isEqualTo("Copied.");

            screenshot(driver, "status-page.png");
        }
    }

    @Test
    void aPageServedUnderAnotherNameReboundToTheAdminAddressCannotReadIt() throws Exception {
        // DNS rebinding as the browser sees it: rebound.example resolves to the admin address
        // (Chromium's host resolver rules stand in for the attacker's DNS server), so a page loaded
        // from it may fetch the admin port as its own origin. The listener refuses the name.
        withBrowser(this::reboundName, "--host-resolver-rules=MAP rebound.example 127.0.0.1");
    }

    private void reboundName(WebDriver driver, WebDriverWait wait) throws Exception {
        try (TestProxy proxy = TestProxy.start("allowlist.hosts = [\"registry.redhat.io\"]")) {
            int port = proxy.server.adminAddress().getPort();
            driver.get("http://rebound.example:" + port + "/healthz");
            assertThat(driver.findElement(By.tagName("body")).getText()).isEqualTo("ok");
            String script = "const done = arguments[arguments.length - 1];"
                    + "Promise.all(['/denied', '/metrics', '/status'].map(p => fetch(p).then(r => r.text()"
                    + ".then(t => r.status + ' ' + t.substring(0, 60))))).then(a => done(a.join('|')), e => done('error ' + e));";
            Object rebound = ((org.openqa.selenium.JavascriptExecutor) driver).executeAsyncScript(script);
            assertThat(String.valueOf(rebound).split("\\|")).hasSize(3)
                    .allSatisfy(r -> assertThat(r).startsWith("403 egress-proxy admin: this listener does not answer"));

            driver.get(proxy.adminUrl("/healthz"));
            Object direct = ((org.openqa.selenium.JavascriptExecutor) driver).executeAsyncScript(script);
            assertThat(String.valueOf(direct).split("\\|")).hasSize(3).allSatisfy(r -> assertThat(r).startsWith("200 "));
            // The three fetches, and whatever the browser asked for on its own (its /favicon.ico).
            assertThat(proxy.scrapeValue("egress_proxy_admin_host_rejected_total")).isGreaterThanOrEqualTo(3.0);
        }
    }

    @Test
    void pageShowsAReportModePolicyItsWouldBeDenialsAndFastFailingHosts() throws Exception {
        withBrowser(this::policiesAndFastFail);
    }

    /**
     * Policy "trial" (clients from 127.0.0.1) reports while the top-level allowlist (everyone else,
     * here 127.0.0.2) enforces: the banner names the allowlist that only reports, each refusal row
     * its policy, and the copy box puts each entry under the allowlist it belongs to. A destination
     * whose only address timed out shows in the fast-fail table.
     */
    private void policiesAndFastFail(WebDriver driver, WebDriverWait wait) throws Exception {
        try (TcpServer echo = TcpServer.echo();
                TcpServer dead = TcpServer.blackhole();
                TestProxy proxy = TestProxy.start("""
                        allowlist.hosts = ["echo.test:7000", "dead.test:7002"]
                        policies = [ { name = trial, clients = ["127.0.0.1/32"],
                                       allowlist { mode = report, hosts = ["echo.test:7000", "dead.test:7002"] } } ]
                        destinations.connect-to {
                          "echo.test:7000" = "127.0.0.1:%1$d"
                          "would.test:7003" = "127.0.0.1:%1$d"
                          "dead.test:7002" = "127.0.0.1:%2$d"
                        }
                        timeouts.connect = 1s
                        """.formatted(echo.port(), dead.port()))) {
            driver.get(proxy.adminUrl("/"));
            wait.until(d -> "true".equals(d.findElement(By.tagName("body")).getDomAttribute("data-loaded")));
            assertThat(driver.findElement(By.id("report-mode")).isDisplayed()).isTrue();
            assertThat(driver.findElement(By.id("report-which")).getText()).isEqualTo("policy \"trial\"");
            assertThat(driver.findElement(By.id("policies-part")).isDisplayed()).isTrue();
            assertThat(column(driver, "policies", 1)).containsExactly("trial");
            assertThat(column(driver, "policies", 2)).containsExactly("clients 127.0.0.1/32");
            assertThat(column(driver, "policies", 3)).containsExactly("report");

            // Policy trial lets an unlisted destination through; the default refuses another one.
            assertThat(connect(proxy, "would.test:7003")).isEqualTo(200);
            try (RawClient other = new RawClient(proxy.address(), InetAddress.getByName("127.0.0.2"))) {
                other.socket.setSoTimeout(10_000);
                other.send("CONNECT cdn99.example.net:443 HTTP/1.1\r\n\r\n");
                assertThat(other.readHead().status()).isEqualTo(403);
            }
            // The only address of dead.test times out once: fast-fail answers the next at once.
            assertThat(connect(proxy, "dead.test:7002")).isEqualTo(504);

            wait.until(d -> column(d, "denied", 1).size() == 2 && column(d, "fast-fail", 1).size() == 1);
            List<String> destinations = column(driver, "denied", 1);
            int would = destinations.indexOf("would.test:7003");
            int refused = destinations.indexOf("cdn99.example.net:443");
            assertThat(column(driver, "denied", 2).get(would)).isEqualTo("would be denied (report mode)");
            assertThat(column(driver, "denied", 4).get(would)).isEqualTo("trial");
            assertThat(column(driver, "denied", 2).get(refused)).isEqualTo("denied");
            assertThat(column(driver, "denied", 4).get(refused)).isEqualTo("default");
            assertThat(column(driver, "denied", 8).get(refused)).startsWith("127.0.0.2");
            assertThat(driver.findElements(By.cssSelector("#denied tbody tr.would"))).hasSize(1);
            assertThat(driver.findElement(By.id("suggested")).getDomProperty("value")).isEqualTo("""
                    "cdn99.example.net"
                    # policy "trial": into its allowlist.hosts in egress-proxy.policies
                    "would.test:7003\"""");
            assertThat(column(driver, "fast-fail", 1)).containsExactly("dead.test:7002");
            assertThat(column(driver, "fast-fail", 2)).containsExactly("127.0.0.1:" + dead.port());
            assertThat(driver.findElement(By.id("fast-fail-empty")).isDisplayed()).isFalse();
            screenshot(driver, "status-page-policies.png");
        }
    }
}
