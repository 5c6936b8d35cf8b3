// Simulation testbench (not synthesizable): runs every sample of a spike-list file through
// `bstdg_net` (written by bstdg/export/hdl.py) and writes one result line per sample.
//
// SPIKES file (decimal, whitespace-separated): the number of samples, then per sample the
// number of spikes n followed by n pairs "time unit" in time order.
// RESULTS file: per sample "prediction tie decision_time cycles", where cycles counts the
// clocks from the end of reset to `done` (the spike list is offered one spike per clock).
`default_nettype none

/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off BLKSEQ */
module bstdg_tb;
    parameter SPIKES = "spikes.txt";
    parameter RESULTS = "results.txt";
    parameter MAX_EVENTS = 65536;  // spikes in one sample, at most
    parameter DW = 16;

    reg clk = 1'b0;
    always #5 clk = ~clk;

    reg           rst = 1'b1;
    reg           in_valid = 1'b0;
    reg           in_end = 1'b0;
    reg  [DW-1:0] in_time = {DW{1'b0}};
    reg  [DW-1:0] in_unit = {DW{1'b0}};
    wire          in_ready, done, tie;
    wire [DW-1:0] pred, dtime;

    bstdg_net dut (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_end(in_end), .in_time(in_time),
        .in_unit(in_unit), .in_ready(in_ready), .done(done), .pred(pred), .tie(tie),
        .dtime(dtime)
    );

    reg [31:0] cycles;
    always @(posedge clk) begin
        if (rst) cycles <= 32'd0;
        else if (!done) cycles <= cycles + 32'd1;
    end

    reg [DW-1:0] ev_t [0:MAX_EVENTS-1];
    reg [DW-1:0] ev_u [0:MAX_EVENTS-1];
    integer fd, fo, r, n_samples, s, n_ev, e, t, u;

    initial begin
        fd = $fopen(SPIKES, "r");
        if (fd == 0) begin
            $display("bstdg_tb: cannot open %s", SPIKES);
            $finish;
        end
        fo = $fopen(RESULTS, "w");
        r = $fscanf(fd, "%d", n_samples);
        for (s = 0; s < n_samples; s = s + 1) begin
            r = $fscanf(fd, "%d", n_ev);
            if (n_ev > MAX_EVENTS) begin
                $display("bstdg_tb: sample %0d has %0d spikes, MAX_EVENTS is %0d", s, n_ev, MAX_EVENTS);
                $finish;
            end
            for (e = 0; e < n_ev; e = e + 1) begin
                r = $fscanf(fd, "%d %d", t, u);
                ev_t[e] = t[DW-1:0];
                ev_u[e] = u[DW-1:0];
            end
            @(negedge clk) rst = 1'b1;
            @(negedge clk) rst = 1'b0;
            e = 0;
            while (!done) begin
                // inputs change at the falling edge; in_ready depends only on registers
                in_valid = (e <= n_ev);
                in_end = (e == n_ev);
                in_time = (e < n_ev) ? ev_t[e] : {DW{1'b0}};
                in_unit = (e < n_ev) ? ev_u[e] : {DW{1'b0}};
                #1;
                if (in_valid && in_ready) e = e + 1;
                @(negedge clk);
            end
            in_valid = 1'b0;
            $fdisplay(fo, "%0d %0d %0d %0d", pred, tie, dtime, cycles);
        end
        $fclose(fo);
        $finish;
    end
endmodule

`default_nettype wire
