/* The runner's control protocol (control.h). Commands, each on one line:
 *   table_add TABLE ENTRY        stage an entry (DPDK's text: match V.. action NAME [ARG V]..)
 *   table_delete TABLE ENTRY     stage a deletion (match V..)
 *   table_default TABLE ENTRY    stage the default action (action NAME [ARG V]..)
 *   commit | abort               apply (all or nothing) or drop what was staged
 *   reg_read NAME INDEX          -> ok VALUE
 *   reg_write NAME INDEX VALUE
 *   reg_dump NAME                -> ok INDEX=VALUE ... (the non-zero cells)
 *   reg_fill NAME VALUE          every cell
 *   meter_set NAME INDEX CIR CBS PIR PBS   (bytes or packets per second, as P4Runtime)
 *   meter_profile_drop CIR CBS PIR PBS     a profile no cell uses any more (kept if one does)
 *   meter_reset NAME INDEX
 *   mirror SESSION PORT TRUNCATE
 *   port_stats PORT              -> ok RX_PACKETS TX_PACKETS
 * Values are decimal or 0x hex. Table writes are staged and take effect at commit, like a
 * P4Runtime batch; if any staged write was refused, commit applies none of them (an error).
 * Replies are written while the pipeline waits: a client reads them as it sends. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_meter.h>
#include <rte_swx_ctl.h>

#include "control.h"

#define LINE_MAX_BYTES 8192
#define REPLY_MAX_BYTES (1 << 22)

struct control {
	struct rte_swx_pipeline *p;
	struct rte_swx_ctl_pipeline *ctl;
	int fd;
	char in[LINE_MAX_BYTES * 4];
	size_t in_len;
	char *reply;
	size_t reply_len;
	int staging_failed;      /* a table write since the last commit/abort was refused */
};

struct control *control_create(struct rte_swx_pipeline *p, int fd)
{
	struct control *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->p = p;
	c->fd = fd;
	c->ctl = rte_swx_ctl_pipeline_create(p);
	c->reply = malloc(REPLY_MAX_BYTES);
	if (!c->ctl || !c->reply) {
		fprintf(stderr, "p4tas-swx: cannot create the pipeline's control object\n");
		free(c->reply);
		free(c);
		return NULL;
	}
	return c;
}

int control_fd(const struct control *c)
{
	return c->fd;
}

int control_pending(const struct control *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	return poll(&pfd, 1, 0) > 0;
}

static void reply(struct control *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reply(struct control *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	/* Two bytes stay free: the reply's newline and vsnprintf's terminator. */
	n = vsnprintf(c->reply + c->reply_len, REPLY_MAX_BYTES - 1 - c->reply_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->reply_len = RTE_MIN(c->reply_len + n, (size_t)REPLY_MAX_BYTES - 2);
}

static int parse_u64(const char *text, uint64_t *value)
{
	char *end;

	if (!text)
		return -1;
	errno = 0;
	*value = strtoull(text, &end, 0);
	return errno || *end ? -1 : 0;
}

static int regarray_size(struct control *c, const char *name, uint32_t *size)
{
	struct rte_swx_ctl_pipeline_info info;
	struct rte_swx_ctl_regarray_info reg;
	uint32_t i;

	if (rte_swx_ctl_pipeline_info_get(c->p, &info))
		return -1;
	for (i = 0; i < info.n_regarrays; i++)
		if (!rte_swx_ctl_regarray_info_get(c->p, i, &reg) && !strcmp(reg.name, name)) {
			*size = reg.size;
			return 0;
		}
	return -1;
}

/* rte_swx_ctl copies what it is given; the parsed entry is ours to free (as DPDK's CLI does). */
static void entry_free(struct rte_swx_table_entry *entry)
{
	free(entry->key);
	free(entry->key_mask);
	free(entry->action_data);
	free(entry);
}

static void table_command(struct control *c, const char *verb, char *table, char *entry_text)
{
	struct rte_swx_table_entry *entry;
	int status;

	if (!table || !entry_text) {
		c->staging_failed = 1;
		reply(c, "error usage: %s TABLE ENTRY", verb);
		return;
	}
	entry = rte_swx_ctl_pipeline_table_entry_read(c->ctl, table, entry_text, NULL);
	if (!entry) {
		c->staging_failed = 1;
		reply(c, "error %s: cannot parse entry for table %s: %s", verb, table, entry_text);
		return;
	}
	if (!strcmp(verb, "table_add"))
		status = rte_swx_ctl_pipeline_table_entry_add(c->ctl, table, entry);
	else if (!strcmp(verb, "table_delete"))
		status = rte_swx_ctl_pipeline_table_entry_delete(c->ctl, table, entry);
	else   /* table_default: execute() takes no other table_ verb */
		status = rte_swx_ctl_pipeline_table_default_entry_add(c->ctl, table, entry);
	entry_free(entry);
	if (status) {
		c->staging_failed = 1;
		reply(c, "error %s %s: %s", verb, table, strerror(-status));
	} else {
		reply(c, "ok");
	}
}

static void reg_dump(struct control *c, const char *name)
{
	uint32_t size, i;
	uint64_t value;

	if (!name || regarray_size(c, name, &size)) {
		reply(c, "error no register array %s", name ? name : "");
		return;
	}
	reply(c, "ok");
	for (i = 0; i < size; i++)
		if (!rte_swx_ctl_pipeline_regarray_read(c->p, name, i, &value) && value)
			reply(c, " %u=%" PRIu64, i, value);
}

static void reg_fill(struct control *c, const char *name, uint64_t value)
{
	uint32_t size, i;

	if (!name || regarray_size(c, name, &size)) {
		reply(c, "error no register array %s", name ? name : "");
		return;
	}
	for (i = 0; i < size; i++)
		rte_swx_ctl_pipeline_regarray_write(c->p, name, i, value);
	reply(c, "ok");
}

/* A meter profile per distinct (cir, cbs, pir, pbs), named after its values. */
static void profile_name(char *out, size_t size, const uint64_t *rates)
{
	snprintf(out, size, "p%" PRIu64 "_%" PRIu64 "_%" PRIu64 "_%" PRIu64,
		 rates[0], rates[1], rates[2], rates[3]);
}

static void meter_set(struct control *c, const char *name, uint64_t *v)
{
	struct rte_meter_trtcm_params params = { .cir = v[1], .cbs = v[2], .pir = v[3],
						 .pbs = v[4] };
	char profile[64];
	int status;

	profile_name(profile, sizeof(profile), &v[1]);
	status = rte_swx_ctl_meter_profile_add(c->p, profile, &params);
	if (status && status != -EEXIST) {
		reply(c, "error meter profile %s: %s", profile, strerror(-status));
		return;
	}
	status = rte_swx_ctl_meter_set(c->p, name, (uint32_t)v[0], profile);
	if (status)
		reply(c, "error meter_set %s %" PRIu64 ": %s", name, v[0], strerror(-status));
	else
		reply(c, "ok");
}

/* Profiles pile up as rates change (congestion control sets new ones all the time): the
 * client drops a cell's previous profile after setting a new one; DPDK keeps it while any
 * other cell uses it (EBUSY), which is not an error here. */
static void meter_profile_drop(struct control *c, const uint64_t *rates)
{
	char profile[64];
	int status;

	profile_name(profile, sizeof(profile), rates);
	status = rte_swx_ctl_meter_profile_delete(c->p, profile);
	if (status && status != -EBUSY && status != -EINVAL)
		reply(c, "error meter_profile_drop %s: %s", profile, strerror(-status));
	else
		reply(c, "ok");
}

static void mirror(struct control *c, uint64_t *v)
{
	struct rte_swx_pipeline_mirroring_session_params params = {
		.port_id = (uint32_t)v[1], .fast_clone = 0, .truncation_length = (uint32_t)v[2] };
	int status = rte_swx_ctl_pipeline_mirroring_session_set(c->p, (uint32_t)v[0], &params);

	if (status)
		reply(c, "error mirror session %" PRIu64 ": %s", v[0], strerror(-status));
	else
		reply(c, "ok");
}

static void port_stats(struct control *c, uint64_t port)
{
	struct rte_swx_port_in_stats in = { 0 };
	struct rte_swx_port_out_stats out = { 0 };

	rte_swx_ctl_pipeline_port_in_stats_read(c->p, (uint32_t)port, &in);
	rte_swx_ctl_pipeline_port_out_stats_read(c->p, (uint32_t)port, &out);
	reply(c, "ok %" PRIu64 " %" PRIu64, in.n_pkts, out.n_pkts);
}

/* Exactly `want` (up to 5) numbers after the command's first `skip` words. */
static int numbers(char **words, int n_words, int skip, uint64_t *v, int want)
{
	int i;

	if (n_words != skip + want)
		return -1;
	for (i = 0; i < want; i++)
		if (parse_u64(words[skip + i], &v[i]))
			return -1;
	return 0;
}

/* All staged table writes, or none of them if one was refused. */
static void commit(struct control *c)
{
	int status;

	if (c->staging_failed) {
		rte_swx_ctl_pipeline_abort(c->ctl);
		c->staging_failed = 0;
		reply(c, "error commit: a staged table write was refused; none applied");
		return;
	}
	status = rte_swx_ctl_pipeline_commit(c->ctl, 1);
	if (status)
		reply(c, "error commit: %s", strerror(-status));
	else
		reply(c, "ok");
}

static void execute(struct control *c, char *line)
{
	char *words[8], *rest = NULL, *save = NULL, *w;
	int n = 0;
	uint64_t v[5] = { 0 };

	/* Table commands keep the entry text whole: split off the first two words only. */
	for (w = strtok_r(line, " ", &save); w && n < 8; w = strtok_r(NULL, " ", &save)) {
		words[n++] = w;
		if (n == 2 && !strncmp(words[0], "table_", 6)) {
			rest = save;
			break;
		}
	}
	if (!n) {
		reply(c, "error empty command");
	} else if (!strcmp(words[0], "table_add") || !strcmp(words[0], "table_delete") ||
		   !strcmp(words[0], "table_default")) {
		table_command(c, words[0], n > 1 ? words[1] : NULL, rest);
	} else if (!strcmp(words[0], "commit")) {
		commit(c);
	} else if (!strcmp(words[0], "abort")) {
		rte_swx_ctl_pipeline_abort(c->ctl);
		c->staging_failed = 0;
		reply(c, "ok");
	} else if (!strcmp(words[0], "reg_read") && !numbers(words, n, 2, v, 1)) {
		uint64_t value;

		if (rte_swx_ctl_pipeline_regarray_read(c->p, words[1], (uint32_t)v[0], &value))
			reply(c, "error reg_read %s %" PRIu64, words[1], v[0]);
		else
			reply(c, "ok %" PRIu64, value);
	} else if (!strcmp(words[0], "reg_write") && !numbers(words, n, 2, v, 2)) {
		if (rte_swx_ctl_pipeline_regarray_write(c->p, words[1], (uint32_t)v[0], v[1]))
			reply(c, "error reg_write %s %" PRIu64, words[1], v[0]);
		else
			reply(c, "ok");
	} else if (!strcmp(words[0], "reg_dump") && n == 2) {
		reg_dump(c, words[1]);
	} else if (!strcmp(words[0], "reg_fill") && !numbers(words, n, 2, v, 1)) {
		reg_fill(c, words[1], v[0]);
	} else if (!strcmp(words[0], "meter_set") && !numbers(words, n, 2, v, 5)) {
		meter_set(c, words[1], v);
	} else if (!strcmp(words[0], "meter_profile_drop") && !numbers(words, n, 1, v, 4)) {
		meter_profile_drop(c, v);
	} else if (!strcmp(words[0], "meter_reset") && !numbers(words, n, 2, v, 1)) {
		if (rte_swx_ctl_meter_reset(c->p, words[1], (uint32_t)v[0]))
			reply(c, "error meter_reset %s %" PRIu64, words[1], v[0]);
		else
			reply(c, "ok");
	} else if (!strcmp(words[0], "mirror") && !numbers(words, n, 1, v, 3)) {
		mirror(c, v);
	} else if (!strcmp(words[0], "port_stats") && !numbers(words, n, 1, v, 1)) {
		port_stats(c, v[0]);
	} else {
		reply(c, "error unknown command or arguments: %s", words[0]);
	}
}

static int send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int control_serve(struct control *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);
	char *line, *nl;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return -1;
	if (n > 0)
		c->in_len += (size_t)n;
	c->in[c->in_len] = 0;
	line = c->in;
	while ((nl = strchr(line, '\n'))) {
		*nl = 0;
		c->reply_len = 0;
		execute(c, line);
		reply(c, "\n");
		if (send_all(c->fd, c->reply, c->reply_len))
			return -1;
		line = nl + 1;
	}
	c->in_len -= (size_t)(line - c->in);
	memmove(c->in, line, c->in_len);
	if (c->in_len == sizeof(c->in) - 1)
		return -1;   /* a line longer than the buffer: a broken peer */
	return 0;
}
